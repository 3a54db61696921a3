"""The simulator's wire format: awsJson1.1 requests checked as the service checks them,
answers and errors as it sends them, opaque signed pagination tokens, and STS's query
protocol for AssumeRole."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import re
import string
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

import orjson

from exporter.demo.lifecycle import JsonObject
from exporter.demo.model import POOL_ID_MAX_LENGTH, POOL_ID_PATTERN, ServiceError

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
PAGE_LIMIT = 60
JOB_ID_PATTERN = re.compile(r"import-[0-9a-zA-Z-]+")
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    # seconds between the answer's bytes: a peer that drips
    drip: float = 0.0


def http_status_of(code: str) -> int:
    return 500 if code in {"InternalErrorException", "InternalFailure"} else 400


def json_reply(payload: JsonObject) -> Reply:
    return Reply(200, orjson.dumps(payload))


def error_reply(code: str, message: str) -> Reply:
    body = json.dumps({"__type": code, "message": message}).encode()
    return Reply(http_status_of(code), body)


def garbage_reply(mode: str) -> Reply:
    if mode == "empty":
        return Reply(200, b"")
    if mode == "wrong_shape":
        body = {"UserImportJobs": {"JobId": 42}, "UserPool": ["not", "a", "pool"], "UserPools": 7}
        return json_reply(body)
    return Reply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")


# ----- requests ------------------------------------------------------------------------


def parsed_params(body: bytes) -> JsonObject:
    try:
        params = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ServiceError(
            "SerializationException", "Start of structure or map found where not expected."
        ) from error
    if not isinstance(params, dict):
        raise ServiceError("SerializationException", "Start of list found where not expected.")
    return params


def validation_error(value: object, member: str, constraint: str) -> ServiceError:
    shown = "null" if value is None else f"'{value}'"
    return ServiceError(
        "InvalidParameterException",
        f"1 validation error detected: Value {shown} at '{member}' failed to satisfy "
        f"constraint: {constraint}",
    )


def invalid_token() -> ServiceError:
    return ServiceError("InvalidParameterException", "Invalid pagination token.")


def required_str_param(params: JsonObject, name: str, member: str) -> str:
    value = params.get(name)
    if value is None:
        raise validation_error(None, member, "Member must not be null")
    if not isinstance(value, str):
        raise ServiceError("SerializationException", f"Expected a string for {name}.")
    return value


def patterned_param(
    params: JsonObject, name: str, member: str, pattern: re.Pattern[str], lengths: tuple[int, int]
) -> str:
    value = required_str_param(params, name, member)
    low, high = lengths
    if len(value) < low:
        raise validation_error(
            value, member, f"Member must have length greater than or equal to {low}"
        )
    if len(value) > high:
        raise validation_error(
            value, member, f"Member must have length less than or equal to {high}"
        )
    if not pattern.fullmatch(value):
        raise validation_error(
            value, member, f"Member must satisfy regular expression pattern: {pattern.pattern}"
        )
    return value


def pool_id_param(params: JsonObject) -> str:
    return patterned_param(
        params, "UserPoolId", "userPoolId", POOL_ID_PATTERN, (1, POOL_ID_MAX_LENGTH)
    )


def job_id_param(params: JsonObject) -> str:
    return patterned_param(params, "JobId", "jobId", JOB_ID_PATTERN, (1, 55))


def limit_param(params: JsonObject, name: str, member: str) -> int:
    value = params.get(name)
    if value is None:
        raise validation_error(None, member, "Member must not be null")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServiceError("SerializationException", f"Expected an integer for {name}.")
    if value < 1:
        raise validation_error(value, member, "Member must have value greater than or equal to 1")
    if value > PAGE_LIMIT:
        raise validation_error(
            value, member, f"Member must have value less than or equal to {PAGE_LIMIT}"
        )
    return value


def optional_token_param(params: JsonObject, name: str, member: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServiceError("SerializationException", f"Expected a string for {name}.")
    if not value or any(char.isspace() for char in value):
        raise validation_error(
            value, member, r"Member must satisfy regular expression pattern: [\S]+"
        )
    return value


# ----- pagination tokens ---------------------------------------------------------------


class TokenCodec:
    """Opaque tokens that name a place in a list: a JSON cursor signed with a key of the
    seed's, so a token is refused when it was changed or comes from another simulator."""

    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(f"cognito-simulator/{seed}".encode()).digest()

    def token(self, cursor: JsonObject) -> str:
        payload = _b64(json.dumps(cursor, separators=(",", ":")).encode())
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
        return f"{payload}.{_b64(mac)}"

    def cursor(self, token: str) -> JsonObject:
        payload, _, mac = token.partition(".")
        try:
            expected = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(_unb64(mac), expected):
                raise ValueError("signature mismatch")
            cursor = json.loads(_unb64(payload))
        except (ValueError, binascii.Error, UnicodeError) as error:
            raise invalid_token() from error
        if not isinstance(cursor, dict):
            raise invalid_token()
        return cursor

    def jobs_cursor(self, token: str, pool_id: str) -> tuple[float, int] | None:
        """The place in `pool_id`'s job list a ListUserImportJobs token names (None: the top)."""
        cursor = self.cursor(token)
        if cursor.get("k") != "jobs" or cursor.get("p") != pool_id:
            raise invalid_token()
        position = cursor.get("c")
        if position is None:
            return None
        if not (isinstance(position, list) and len(position) == 2):
            raise invalid_token()
        created, seq = position
        if not isinstance(created, int | float) or not isinstance(seq, int):
            raise invalid_token()
        return float(created), seq

    def pools_index(self, token: str) -> int:
        cursor = self.cursor(token)
        index = cursor.get("i")
        if cursor.get("k") != "pools" or not isinstance(index, int):
            raise invalid_token()
        return index


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ----- STS (query protocol, XML answers) -----------------------------------------------


def sts_params(body: bytes) -> dict[str, str]:
    return {key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()}


def sts_error_reply(code: str, message: str) -> Reply:
    body = (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return Reply(403, body.encode(), "text/xml")


def sts_assume_role_reply(params: Mapping[str, str], now: float, draw: random.Random) -> Reply:
    role_arn = params.get("RoleArn", "")
    duration = int(params.get("DurationSeconds", "3600"))
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + duration))
    letters = string.ascii_letters + string.digits
    key_id = "ASIA" + "".join(draw.choices(string.ascii_uppercase + string.digits, k=16))
    secret = "".join(draw.choices(letters, k=40))
    token = "".join(draw.choices(letters, k=300))
    session = params.get("RoleSessionName", "session")
    body = (
        f'<AssumeRoleResponse xmlns="{STS_NAMESPACE}"><AssumeRoleResult><Credentials>'
        f"<AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
        f"<SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration>"
        "</Credentials><AssumedRoleUser>"
        f"<AssumedRoleId>AROA{key_id[4:]}:{xml_escape(session)}</AssumedRoleId>"
        f"<Arn>{xml_escape(role_arn)}/{xml_escape(session)}</Arn></AssumedRoleUser>"
        f"</AssumeRoleResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
        "</ResponseMetadata></AssumeRoleResponse>"
    )
    return Reply(200, body.encode(), "text/xml")


def sts_caller_identity_reply(account: str, access_key: str) -> Reply:
    body = (
        f'<GetCallerIdentityResponse xmlns="{STS_NAMESPACE}"><GetCallerIdentityResult>'
        f"<Arn>arn:aws:iam::{account}:user/simulated</Arn><UserId>AIDA{xml_escape(access_key)}</UserId>"
        f"<Account>{account}</Account></GetCallerIdentityResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</GetCallerIdentityResponse>"
    )
    return Reply(200, body.encode(), "text/xml")


def signed_scope(headers: Mapping[str, str]) -> tuple[str, str]:
    """(access key id, region) of a SigV4-signed request's credential scope."""
    credential = headers.get("Authorization", "").partition("Credential=")[2].partition(",")[0]
    parts = credential.split("/")
    return (parts[0], parts[2]) if len(parts) >= 3 else ("", "")


def credential_of(headers: Mapping[str, str]) -> str:
    """What a careless service might echo: the request's credential and session token."""
    authorization = headers.get("Authorization", "")
    credential = authorization.partition("Credential=")[2].partition(",")[0]
    return f"credential {credential} token {headers.get('X-Amz-Security-Token', '')}"
