"""What went wrong with a call, named from a closed set: a label value and a log field.

A code the service sends is kept when botocore's models of Cognito, STS and CloudWatch Logs,
or the AWS-wide errors, know it; any other text an endpoint sends reads `Other`, so that an
endpoint cannot make up series (or carry text) through the `error_code` label.
"""

from __future__ import annotations

import functools

import botocore.loaders
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.model import ServiceModel

OTHER = "Other"
# errors any AWS query or JSON service may answer, not listed in each service's model
_COMMON_CODES = frozenset(
    {
        "AccessDenied",
        "ExpiredToken",
        "IncompleteSignature",
        "InternalFailure",
        "InvalidAction",
        "InvalidClientTokenId",
        "InvalidParameterCombination",
        "InvalidParameterValue",
        "InvalidQueryParameter",
        "MalformedQueryString",
        "MissingAction",
        "MissingAuthenticationToken",
        "MissingParameter",
        "NotAuthorized",
        "OptInRequired",
        "RequestExpired",
        "ServiceUnavailable",
        "SignatureDoesNotMatch",
        "Throttling",
        "ThrottlingException",
        "UnrecognizedClient",
        "Validation",
    }
)
_SERVICES = ("cognito-idp", "sts", "logs")


class InvalidResponseError(Exception):
    """The service answered 200 with a body the exporter does not read as an answer."""


def error_code(error: BaseException) -> str:
    """A short name, from a closed set, for what went wrong."""
    own_code = getattr(error, "error_code", None)
    if isinstance(own_code, str):
        return own_code
    if isinstance(error, ClientError):
        return service_code(str(error.response.get("Error", {}).get("Code", "")))
    if isinstance(error, NoCredentialsError):
        return "NoCredentials"
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return "Timeout"
    if isinstance(error, EndpointConnectionError | HTTPClientError):
        return "ConnectionError"
    if isinstance(error, InvalidResponseError):
        return "InvalidResponse"
    return type(error).__name__.removesuffix("Error") or "Unknown"


def service_code(code: str) -> str:
    """The service's error code without its namespace and `Exception` suffix, `HTTPnnn` for
    a bare HTTP status, `Other` for a code no model knows."""
    code = code.rsplit("#", 1)[-1].removesuffix("Exception")
    if not code:
        return "Unknown"
    if code.isascii() and code.isdigit() and len(code) == 3:
        return f"HTTP{code}"
    if code in _known_codes():
        return code
    return OTHER


@functools.cache
def _known_codes() -> frozenset[str]:
    loader = botocore.loaders.create_loader()
    codes = set(_COMMON_CODES)
    for name in _SERVICES:
        model = ServiceModel(loader.load_service_model(name, "service-2"), name)
        for shape in model.error_shapes:
            wire_code = shape.metadata.get("error", {}).get("code") or shape.name
            codes.add(str(wire_code).removesuffix("Exception"))
    return frozenset(codes)
