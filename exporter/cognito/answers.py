"""Reading the services' JSON answers: strictly, within a size bound, timestamps kept as
epoch seconds.

botocore's own JSON parser reads a successful answer whose body is not JSON as an empty
result, which would look like a pool with no jobs; the parser here refuses it, decoding once.
CloudWatch Logs answers are larger (a page holds up to 1 MB of log lines) and carry text that
users' data can shape, so they get a bound of their own and text that is not valid UTF-8 is
read with replacement characters rather than losing the whole page.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from botocore.parsers import JSONParser, ResponseParserFactory
from botocore.utils import parse_timestamp

from exporter.cognito.errors import InvalidResponseError

# A full page of 50 import jobs, presigned URLs and messages at their longest, is under 200 kB
MAX_ANSWER_BYTES = 2 * 1024 * 1024
# 1 MB of log lines a page, and each event's stream name, ids and timestamps around them
MAX_LOGS_ANSWER_BYTES = 8 * 1024 * 1024


def epoch_seconds(value: object) -> float:
    """botocore timestamp parser keeping epoch seconds as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return float(parse_timestamp(value).timestamp())
    raise ValueError("timestamp is neither a number nor a date string")


class _StrictJSONParser(JSONParser):
    def __init__(self, max_bytes: int, *, lenient_text: bool) -> None:
        super().__init__(timestamp_parser=epoch_seconds)
        self._max_bytes = max_bytes
        self._lenient_text = lenient_text

    def _do_parse(self, response: dict[str, Any], shape: Any) -> dict[str, Any]:
        # botocore's type stubs leave out the parser's internals that this override builds on
        parent: Any = super()
        if shape is None or shape.event_stream_name:
            result: dict[str, Any] = parent._do_parse(response, shape)
            return result
        # The decoded JSON is used as it is, not walked again against the service model:
        # every field the exporter reads is checked by its own parsers (exporter.cognito.jobs,
        # .pools and .logs), and epoch timestamps are what they need.
        this: Any = self
        parsed = json_object(response["body"], self._max_bytes, lenient_text=self._lenient_text)
        this._inject_response_metadata(parsed, response["headers"])
        return parsed


def json_object(body: bytes, max_bytes: int, *, lenient_text: bool = False) -> dict[str, Any]:
    """The JSON object `body` holds; InvalidResponseError when it is none or too long.
    `lenient_text`: bytes that are not UTF-8 and lone surrogates are read, not refused."""
    if len(body) > max_bytes:
        raise InvalidResponseError(f"the answer is longer than {max_bytes:,} bytes")
    if not body.strip():
        raise InvalidResponseError("the service answered with an empty body")
    try:
        # orjson refuses what JSON does not allow (NaN, Infinity, integers past 64 bits)
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = _leniently(body) if lenient_text else None
        if decoded is None:
            raise InvalidResponseError(
                "the service answered with a body that is not JSON"
            ) from None
    if not isinstance(decoded, dict):
        raise InvalidResponseError("the service answered with JSON that is not an object")
    return decoded


def _leniently(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8", "replace"), parse_constant=_refuse_constant)
    except ValueError:
        return None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class AnswerParsers(ResponseParserFactory):
    """botocore's parser factory with the strict JSON parser; `max_bytes` bounds an answer."""

    def __init__(self, max_bytes: int = MAX_ANSWER_BYTES, *, lenient_text: bool = False) -> None:
        super().__init__()
        self._max_bytes = max_bytes
        self._lenient_text = lenient_text

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "json":
            return _StrictJSONParser(self._max_bytes, lenient_text=self._lenient_text)
        return super().create_parser(protocol_name)
