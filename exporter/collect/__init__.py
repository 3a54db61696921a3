"""Collecting: what is known of each pool between scrapes, the scraper that reads every pool
within a deadline, the gate every AWS attempt passes, discovery, and the metrics."""
