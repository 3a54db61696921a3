"""FilterLogEvents: the lines an import job wrote to its CloudWatch Logs stream, one page at
a time, each answer checked before anything of it is used.

Cognito writes a job's log to the group `/aws/cognito/userpools/<pool id>/<pool name>`, in
the stream `<job id>/<job name>`, one line a CSV row. Only the rows that say why a user was
not imported are asked for (a filter pattern), within the job's own time range, so a job
whose rows mostly succeeded costs few pages. A page can be empty while a token remains (the
service searches the time range in steps): the caller bounds pages and time, not this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.cognito.jobs import InvalidJobsPage, Job

LOG_GROUP_PREFIX = "/aws/cognito/userpools/"
# OR of two terms: the rows of skipped and failed users, and nothing of the others
ROW_FILTER_PATTERN = "?SKIPPED ?FAILED"
# what the service allows a page to hold at most
MAX_PAGE_EVENTS = 10_000
# one log line is kept this long at most; a row's text is a sentence
MAX_MESSAGE_CHARS = 2_000
MAX_TOKEN_CHARS = 4_096
# the job's time range, widened for clocks and lines written just before its start or
# after its completion stamp
RANGE_SLACK_SECONDS = 300.0


class LogsClient(Protocol):
    """What the exporter calls of botocore's `logs` client."""

    def filter_log_events(self, **request: Any) -> dict[str, Any]: ...


class InvalidLogPage(InvalidJobsPage):
    """The logs service answered, but what it said cannot be trusted."""


@dataclass(frozen=True)
class LogPage:
    messages: tuple[str, ...]
    next_token: str | None


def log_group(pool_id: str, pool_name: str) -> str:
    return f"{LOG_GROUP_PREFIX}{pool_id}/{pool_name}"


def job_stream(job: Job) -> str:
    """The stream Cognito writes `job`'s log to."""
    return f"{job.job_id}/{job.name}"


def job_request(group: str, job: Job) -> dict[str, Any]:
    """The FilterLogEvents request for `job`'s rows of skipped and failed users, without its
    token: the job's stream (by id, which no other job shares) and its time range."""
    request: dict[str, Any] = {
        "logGroupName": group,
        "logStreamNamePrefix": f"{job.job_id}/",
        "filterPattern": ROW_FILTER_PATTERN,
        "limit": MAX_PAGE_EVENTS,
    }
    start = job.started or job.created
    if start is not None:
        request["startTime"] = int((start - RANGE_SLACK_SECONDS) * 1000)
    if job.completed is not None:
        request["endTime"] = int((job.completed + RANGE_SLACK_SECONDS) * 1000)
    return request


def fetch_log_page(
    client: LogsClient, request: Mapping[str, Any], token: str | None, stream: str | None = None
) -> LogPage:
    """A page of the answer to `request`, with only the events of `stream` when it is given:
    the prefix the request names the job's stream by also takes in any other stream whose
    name starts with the job's id and a slash."""
    asked = dict(request)
    if token is not None:
        asked["nextToken"] = token
    try:
        response = client.filter_log_events(**asked)
    except (AttributeError, TypeError, KeyError, ValueError) as error:
        raise InvalidLogPage(f"the answer could not be read: {type(error).__name__}") from None
    return parse_log_page(response, stream)


def parse_log_page(response: Mapping[str, Any], stream: str | None = None) -> LogPage:
    events = response.get("events", [])
    if not isinstance(events, list):
        raise InvalidLogPage("events is not a list")
    if len(events) > MAX_PAGE_EVENTS:
        raise InvalidLogPage(f"{len(events)} events in one page, more than a page holds")
    messages = []
    for event in events:
        message = event.get("message") if isinstance(event, dict) else None
        if not isinstance(message, str):
            raise InvalidLogPage("an event has no message")
        if stream is not None and event.get("logStreamName") != stream:
            continue
        messages.append(message[:MAX_MESSAGE_CHARS])
    token = response.get("nextToken")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
        raise InvalidLogPage("nextToken is not a token")
    return LogPage(tuple(messages), token or None)
