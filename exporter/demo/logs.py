"""Simulated CloudWatch Logs for the simulated pools' import jobs: the log each job with a
log role writes, and FilterLogEvents over it, with the service's paging as it is.

A job's stream `<job id>/<job name>` in the group `/aws/cognito/userpools/<pool id>/<pool
name>` holds a line that is not a row (`Cognito User Pools Import - Test Log`), then one line
for every CSV row the job processed: its skipped rows, its failed rows, then its imported
ones, each with the service's wordings in turn (`SKIPPED_TEXTS`, `FAILED_TEXTS`), rewordings
and a wording of a kind the exporter does not know included. Lines are made when asked for,
never stored, so a job of 500,000 rows costs no memory. Tests may give a job lines of their
own (`set_lines`).

Pages hold at most `limit` events (10,000 at most) and 1 MB of messages (26 bytes counted
for each event beside its message, as the service counts); a page may be empty while a
token remains (`LogsFaults.empty_pages`). Faults: a refusal, throttling, latency, events
given twice (pages that overlap, a second stream under the job's id).
"""

from __future__ import annotations

import random
import re
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from exporter.demo.lifecycle import JsonObject
from exporter.demo.model import ServiceError
from exporter.demo.wire import Reply, TokenCodec, error_reply, json_reply, parsed_params

if TYPE_CHECKING:
    from exporter.demo.model import CognitoModel

LOGS_TARGET_PREFIX = "Logs_20140328."
GROUP_PREFIX = "/aws/cognito/userpools/"
MAX_LIMIT = 10_000
CALL_HISTORY = 10_000
PAGE_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
TEST_LOG_LINE = "Cognito User Pools Import - Test Log"
SUCCEEDED_TEXT = "The import succeeded."
# each wording the simulated service writes, with the reason it means
SKIPPED_TEXTS: tuple[tuple[str, str], ...] = (
    ("The user already exists.", "already_exists"),
    ("The user already exists in the user pool.", "already_exists"),
)
FAILED_TEXTS: tuple[tuple[str, str], ...] = (
    (
        "The User Record does not set any of the auto verified attributes to true. "
        "(Example: email_verified to true).",
        "no_verified_attribute",
    ),
    (
        "The User Record does not set any of the auto verified attributes to verified. "
        "(Example: email_verified to verified).",
        "no_verified_attribute",
    ),
    ("The user data does not match the user pool schema.", "schema_mismatch"),
    ("Invalid attribute value for phone_number: Invalid phone number format.", "schema_mismatch"),
    ("The user could not be imported due to an internal error.", "internal_error"),
    ("Something new went wrong with this record.", "other"),
)
_TERM = re.compile(r'\??("[^"]+"|[A-Za-z0-9_]+)')


def wording_offset(job_id: str) -> int:
    """Where a job's rows start in the turn of wordings, so that jobs differ as real ones do."""
    return zlib.crc32(job_id.encode())


def expected_reasons(job_id: str, skipped: int, failed: int) -> dict[tuple[str, str], int]:
    """What the default lines of a job with these counts say, by (outcome, reason)."""
    offset = wording_offset(job_id)
    counts: Counter[tuple[str, str]] = Counter()
    for outcome, texts, rows in (
        ("skipped", SKIPPED_TEXTS, skipped),
        ("failed", FAILED_TEXTS, failed),
    ):
        for index, (_, reason) in enumerate(texts):
            first = (index - offset) % len(texts)
            counts[(outcome, reason)] += len(range(first, rows, len(texts)))
    return {key: users for key, users in counts.items() if users}


@dataclass
class LogsFaults:
    """Run-time fault knobs of the logs endpoint, read afresh on every request."""

    # answer every FilterLogEvents with this error code (AccessDeniedException, ...)
    error: str | None = None
    throttle_rate: float = 0.0
    latency: float = 0.0
    # pages with no events and a token, before each read's first events
    empty_pages: int = 0
    # messages of a page, in bytes, at most (the service's 1 MB)
    page_bytes: int = PAGE_BYTES
    # this text in an answer is sent as bytes that are not UTF-8
    not_utf8_marker: str | None = None
    # every page carries the token it was asked with (a search that never ends)
    repeat_token: bool = False
    # each page after the first starts with the last event of the page before again
    overlapping_pages: bool = False
    # each job's lines also in a second stream under the job's id (`<job id>/<name>.copy`)
    copied_stream: bool = False

    def clear(self) -> None:
        for name, value in vars(LogsFaults()).items():
            setattr(self, name, value)


@dataclass(frozen=True)
class _Stream:
    name: str
    lines: Sequence[str] | None  # a test's own lines; None: the job's default lines
    skipped: int
    failed: int
    rows: int
    offset: int
    start_ms: int
    end_ms: int


@dataclass
class SimulatedLogs:
    """FilterLogEvents over the model's jobs' logs, with faults and call accounting."""

    model: CognitoModel
    seed: int = 0
    faults: LogsFaults = field(default_factory=LogsFaults)
    calls: Counter[str] = field(default_factory=Counter)
    call_times: deque[float] = field(default_factory=lambda: deque(maxlen=CALL_HISTORY))
    _own_lines: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens = TokenCodec(self.seed * 7919 + 1)
        self._draws = random.Random(f"{self.seed}/logs-throttle")  # noqa: S311

    def set_lines(self, job_id: str, lines: Sequence[str]) -> None:
        """The job's stream holds these lines instead of its default ones."""
        with self._lock:
            self._own_lines[job_id] = list(lines)

    def call_count(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def respond(self, target: str, body: bytes, now: Callable[[], float] = time.monotonic) -> Reply:
        arrived = now()
        operation = target.removeprefix(LOGS_TARGET_PREFIX)
        with self._lock:
            self.calls[operation] += 1
            self.call_times.append(arrived)
        try:
            if operation != "FilterLogEvents":
                raise ServiceError("UnknownOperationException", f"Unknown operation {target!r}.")
            faults = self.faults
            if faults.error is not None:
                raise ServiceError(
                    faults.error, "User is not authorized to perform: logs:FilterLogEvents"
                )
            with self._lock:
                throttled = self._draws.random() < faults.throttle_rate
            if throttled:
                raise ServiceError("ThrottlingException", "Rate exceeded")
            reply = json_reply(self._filter(parsed_params(body)))
        except ServiceError as error:
            reply = error_reply(error.code, error.message)
        marker = self.faults.not_utf8_marker
        if marker is not None:
            reply = replace(reply, body=reply.body.replace(marker.encode(), b"\xff\xfe"))
        left = arrived + self.faults.latency - now()
        if left > 0:
            time.sleep(left)
        return reply

    # ----- FilterLogEvents -----

    def _filter(self, params: JsonObject) -> JsonObject:
        group = _text(params, "logGroupName")
        prefix = params.get("logStreamNamePrefix")
        if prefix is not None and not isinstance(prefix, str):
            raise ServiceError(
                "SerializationException", "Expected a string for logStreamNamePrefix."
            )
        limit = params.get("limit", MAX_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ServiceError("InvalidParameterException", "limit must be from 1 to 10000.")
        terms, any_term = _terms(params.get("filterPattern"))
        start, end = _time(params, "startTime"), _time(params, "endTime")
        streams = [s for s in self._streams(group) if prefix is None or s.name.startswith(prefix)]
        token = params.get("nextToken")
        if token is None:
            position, empties = 0, self.faults.empty_pages
        else:
            position, empties = self._cursor(token, group, prefix)
        if self.faults.repeat_token and token is not None:
            return {"events": [], "nextToken": token}
        if empties > 0:
            return {"events": [], "nextToken": self._token(group, prefix, position, empties - 1)}
        if self.faults.overlapping_pages and token is not None:
            position = max(0, position - 1)
        events: list[JsonObject] = []
        size = 0
        for index, stream, timestamp, message in _events(streams, position):
            position = index + 1
            if (start is not None and timestamp < start) or (end is not None and timestamp > end):
                continue
            if terms and not (any if any_term else all)(term in message for term in terms):
                continue
            weight = len(message.encode()) + EVENT_OVERHEAD_BYTES
            if events and (len(events) >= limit or size + weight > self.faults.page_bytes):
                position = index
                break
            size += weight
            events.append(
                {
                    "logStreamName": stream.name,
                    "timestamp": timestamp,
                    "message": message,
                    "ingestionTime": timestamp + 400,
                    "eventId": f"{timestamp:020d}{index:016d}",
                }
            )
        else:
            return {"events": events, "searchedLogStreams": []}
        return {"events": events, "nextToken": self._token(group, prefix, position, 0)}

    def _streams(self, group: str) -> list[_Stream]:
        pool_id, _, name = group.removeprefix(GROUP_PREFIX).partition("/")
        missing = ServiceError(
            "ResourceNotFoundException", "The specified log group does not exist."
        )
        if not group.startswith(GROUP_PREFIX) or not pool_id:
            raise missing
        try:
            pool = self.model.describe_pool(pool_id)
        except ServiceError:
            raise missing from None
        if pool.get("Name") != name:
            raise missing
        streams: list[_Stream] = []
        for job in reversed(self.model.jobs(pool_id)):  # oldest first, as streams were made
            if not job.get("CloudWatchLogsRoleArn") or "StartDate" not in job:
                continue
            job_id = str(job["JobId"])
            started = _number(job, "StartDate")
            ended = _number(job, "CompletionDate") or self.model.clock()
            skipped, failed = int(_number(job, "SkippedUsers")), int(_number(job, "FailedUsers"))
            with self._lock:
                own = self._own_lines.get(job_id)
            copies = 2 if self.faults.copied_stream else 1
            streams.extend(
                _Stream(
                    name=f"{job_id}/{job['JobName']}" + ".copy" * copy,
                    lines=own,
                    skipped=skipped,
                    failed=failed,
                    rows=skipped + failed + int(_number(job, "ImportedUsers")),
                    offset=wording_offset(job_id),
                    start_ms=int(started * 1000),
                    end_ms=max(int(started * 1000), int(ended * 1000)),
                )
                for copy in range(copies)
            )
        return streams

    def _token(self, group: str, prefix: str | None, position: int, empties: int) -> str:
        return self._tokens.token(
            {"k": "logs", "g": group, "s": prefix, "i": position, "e": empties}
        )

    def _cursor(self, token: object, group: str, prefix: str | None) -> tuple[int, int]:
        """The position and the empty pages left that a token names."""
        if not isinstance(token, str) or not token:
            raise ServiceError("InvalidParameterException", "The specified nextToken is invalid.")
        cursor = self._tokens.cursor(token)
        if cursor.get("k") != "logs" or cursor.get("g") != group or cursor.get("s") != prefix:
            raise ServiceError("InvalidParameterException", "The specified nextToken is invalid.")
        position, empties = cursor.get("i"), cursor.get("e")
        if not isinstance(position, int) or not isinstance(empties, int):
            raise ServiceError("InvalidParameterException", "The specified nextToken is invalid.")
        return position, empties


def _events(streams: list[_Stream], position: int) -> Iterator[tuple[int, _Stream, int, str]]:
    """Every stream's events in order, from the `position`-th on: (position, stream,
    timestamp in ms, message)."""
    offset = 0
    for stream in streams:
        count = len(stream.lines) if stream.lines is not None else stream.rows + 1
        if position >= offset + count:
            offset += count
            continue
        span = stream.end_ms - stream.start_ms
        for line in range(max(0, position - offset), count):
            timestamp = stream.start_ms + (span * line) // max(1, count)
            yield offset + line, stream, timestamp, _line(stream, line)
        offset += count


def _line(stream: _Stream, index: int) -> str:
    if stream.lines is not None:
        return stream.lines[index]
    if index == 0:
        return TEST_LOG_LINE
    row = index - 1
    line_number = index + 1  # line 1 of the CSV file is its header
    if row < stream.skipped:
        text = SKIPPED_TEXTS[(row + stream.offset) % len(SKIPPED_TEXTS)][0]
        return f"[SKIPPED] Line Number {line_number} - {text}"
    row -= stream.skipped
    if row < stream.failed:
        text = FAILED_TEXTS[(row + stream.offset) % len(FAILED_TEXTS)][0]
        return f"[FAILED] Line Number {line_number} - {text}"
    return f"[SUCCEEDED] Line Number {line_number} - {SUCCEEDED_TEXT}"


def _terms(pattern: object) -> tuple[tuple[str, ...], bool]:
    """The terms of a pattern of plain or quoted terms (all of them must match), or of
    terms each after a `?` (any of them), and which of the two."""
    if pattern is None or pattern == "":
        return (), False
    if not isinstance(pattern, str):
        raise ServiceError("SerializationException", "Expected a string for filterPattern.")
    parts = pattern.split()
    any_term = parts[0].startswith("?")
    terms = []
    for part in parts:
        match = _TERM.fullmatch(part)
        if match is None or part.startswith("?") != any_term:
            raise ServiceError("InvalidParameterException", "Invalid filter pattern.")
        terms.append(match.group(1).strip('"'))
    return tuple(terms), any_term


def _number(job: JsonObject, name: str) -> float:
    value = job.get(name)
    return float(value) if isinstance(value, int | float) else 0.0


def _text(params: JsonObject, name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise ServiceError("InvalidParameterException", f"{name} must be given.")
    return value


def _time(params: JsonObject, name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ServiceError("InvalidParameterException", f"{name} must be epoch milliseconds.")
    return value
