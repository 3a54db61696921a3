"""Prometheus exporter for Amazon Cognito user pool import jobs."""

__version__ = "0.1.0"
