"""ListUserImportJobs, one page at a time, turned into plain, validated job records.

Only what the metrics and the reading of job logs need is kept; PreSignedUrl (it grants upload
to the import bucket) and any field this code does not know are dropped here, so they never
travel further.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from exporter.cognito.errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Stopped", "Expired"})
KNOWN_STATUSES = (
    "Created",
    "Pending",
    "InProgress",
    "Stopping",
    "Expired",
    "Stopped",
    "Failed",
    "Succeeded",
)
MAX_USER_COUNT = 2**53
# what one ListUserImportJobs answer holds at most, though MaxResults takes up to 60
SERVICE_PAGE_JOBS = 50
MAX_RESULTS = 60
_STATUS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_MAX_NAME_LENGTH = 256
_MAX_MESSAGE_LENGTH = 1024
_MAX_ROLE_LENGTH = 2048


class PagingError(Exception):
    """A list that does not end as a list should: a repeated token, too many pages."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class InvalidJobsPage(Exception):
    """The service answered, but what it said cannot be trusted."""

    error_code = "InvalidResponse"


class DescribeNotAllowed(Exception):
    """DescribeUserImportJob is denied (the policy allows ListUserImportJobs only)."""

    def __init__(self, error_code: str) -> None:
        super().__init__(f"DescribeUserImportJob is not allowed ({error_code})")
        self.error_code = error_code


# what an IAM policy without the action, or Cognito's own refusal, answers
DENIED_CODES = frozenset({"AccessDenied", "NotAuthorized", "UnauthorizedOperation"})


class Job(NamedTuple):
    # A named tuple rather than a frozen dataclass: a cold scrape builds one per job listed,
    # and building a tuple costs far less (bench/README.md has the figures).
    job_id: str
    name: str
    status: str
    created: float | None
    started: float | None
    completed: float | None
    imported: int
    skipped: int
    failed: int
    completion_message: str | None
    # the role the job writes its CloudWatch log with; None: the job writes no log
    log_role_arn: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def last_change(self) -> float | None:
        """When the job last moved: its completion, else its start, else its creation."""
        return self.completed or self.started or self.created

    def created_before(self, other: Job) -> bool:
        """Created earlier than `other`; False when either creation date is unknown."""
        return (
            self.created is not None and other.created is not None and self.created < other.created
        )


@dataclass(frozen=True, slots=True)
class Page:
    jobs: tuple[Job, ...]
    next_token: str | None


def fetch_page(
    client: CognitoIdentityProviderClient, pool_id: str, page_size: int, token: str | None
) -> Page:
    request: dict[str, Any] = {"UserPoolId": pool_id, "MaxResults": page_size}
    if token is not None:
        request["PaginationToken"] = token
    try:
        response = client.list_user_import_jobs(**request)
    except (AttributeError, TypeError, KeyError, ValueError) as error:
        # botocore's parser trips over JSON of the wrong shape with these, not a ClientError
        raise InvalidJobsPage(f"the answer could not be read: {type(error).__name__}") from None
    return parse_page(response)


def fetch_job(client: CognitoIdentityProviderClient, pool_id: str, job_id: str) -> Job | None:
    """The job as DescribeUserImportJob tells it; None when the pool has it no more."""
    try:
        response = client.describe_user_import_job(UserPoolId=pool_id, JobId=job_id)
    except client.exceptions.ResourceNotFoundException:
        return None
    except ClientError as error:
        code = error_code(error)
        if code in DENIED_CODES:
            raise DescribeNotAllowed(code) from None
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as error:
        raise InvalidJobsPage(f"the answer could not be read: {type(error).__name__}") from None
    raw = response.get("UserImportJob")
    if raw is None:
        raise InvalidJobsPage("the answer holds no UserImportJob")
    return parse_job(raw)


@dataclass(frozen=True)
class PoolJobs:
    """A pool's import jobs as the API gives them: a page of the list, or one job."""

    client: CognitoIdentityProviderClient
    pool_id: str
    page_size: int

    def page(self, token: str | None) -> Page:
        return fetch_page(self.client, self.pool_id, self.page_size, token)

    def job(self, job_id: str) -> Job | None:
        return fetch_job(self.client, self.pool_id, job_id)


def parse_page(response: Mapping[str, Any]) -> Page:
    raw_jobs = response.get("UserImportJobs", [])
    if not isinstance(raw_jobs, list):
        raise InvalidJobsPage("UserImportJobs is not a list")
    if len(raw_jobs) > MAX_RESULTS:
        raise InvalidJobsPage(f"{len(raw_jobs)} jobs in one answer, more than MaxResults allows")
    token = response.get("PaginationToken")
    if token is not None and not isinstance(token, str):
        raise InvalidJobsPage("PaginationToken is not a string")
    return Page(jobs=tuple(parse_job(raw) for raw in raw_jobs), next_token=token or None)


def parse_job(raw: object) -> Job:
    # Runs for every job listed: one pass of exact type checks on the common shape (JSON
    # gives exact int, float and str; a bool is not a count here); a job that fails them is
    # read again field by field, to accept an explicit null or say what is wrong.
    if type(raw) is not dict:
        raise InvalidJobsPage("a job is not an object")
    get = raw.get
    job_id = get("JobId")
    status = get("Status")
    created = get("CreationDate")
    started = get("StartDate")
    completed = get("CompletionDate")
    imported = get("ImportedUsers", 0)
    skipped = get("SkippedUsers", 0)
    failed = get("FailedUsers", 0)
    if (
        type(job_id) is not str
        or not job_id
        or type(status) is not str
        or (status not in _KNOWN_STATUS_SET and not _STATUS_PATTERN.fullmatch(status))
        or not _is_timestamp(created)
        or not _is_timestamp(started)
        or not _is_timestamp(completed)
        or type(imported) is not int
        or type(skipped) is not int
        or type(failed) is not int
        or not 0 <= imported <= MAX_USER_COUNT
        or not 0 <= skipped <= MAX_USER_COUNT
        or not 0 <= failed <= MAX_USER_COUNT
    ):
        return _parse_carefully(raw, job_id)
    name = get("JobName")
    message = get("CompletionMessage")
    role = get("CloudWatchLogsRoleArn")
    return _new_job(
        Job,
        (
            job_id[:_MAX_NAME_LENGTH],
            name[:_MAX_NAME_LENGTH] if type(name) is str else "",
            status,
            None if created is None else float(created),
            None if started is None else float(started),
            None if completed is None else float(completed),
            imported,
            skipped,
            failed,
            message[:_MAX_MESSAGE_LENGTH] if type(message) is str else None,
            role[:_MAX_ROLE_LENGTH] if type(role) is str and role else None,
        ),
    )


_KNOWN_STATUS_SET = frozenset(KNOWN_STATUSES)
_new_job = tuple.__new__


def _valid_status(status: object) -> bool:
    return type(status) is str and _STATUS_PATTERN.fullmatch(status) is not None


def _is_timestamp(value: object) -> bool:
    kind = type(value)
    return value is None or ((kind is float or kind is int) and math.isfinite(value))  # type: ignore[arg-type]


def _parse_carefully(raw: dict[str, Any], job_id: object) -> Job:
    if type(job_id) is not str or not job_id:
        raise InvalidJobsPage("a job has no JobId")
    status = raw.get("Status")
    if not _valid_status(status):
        raise InvalidJobsPage(f"job {job_id[:64]} has no valid Status")
    name = raw.get("JobName")
    message = raw.get("CompletionMessage")
    role = raw.get("CloudWatchLogsRoleArn")
    return Job(
        job_id=job_id[:_MAX_NAME_LENGTH],
        name=name[:_MAX_NAME_LENGTH] if type(name) is str else "",
        status=status,  # type: ignore[arg-type]
        created=_timestamp(raw, "CreationDate", job_id),
        started=_timestamp(raw, "StartDate", job_id),
        completed=_timestamp(raw, "CompletionDate", job_id),
        imported=_user_count(raw, "ImportedUsers", job_id),
        skipped=_user_count(raw, "SkippedUsers", job_id),
        failed=_user_count(raw, "FailedUsers", job_id),
        completion_message=message[:_MAX_MESSAGE_LENGTH] if type(message) is str else None,
        log_role_arn=role[:_MAX_ROLE_LENGTH] if type(role) is str and role else None,
    )


def _timestamp(raw: dict[str, Any], field: str, job_id: str) -> float | None:
    value = raw.get(field)
    if not _is_timestamp(value):
        raise InvalidJobsPage(f"job {job_id[:64]} has an invalid {field}")
    return None if value is None else float(value)


def _user_count(raw: dict[str, Any], field: str, job_id: str) -> int:
    value = raw.get(field)
    if value is None:
        return 0
    if type(value) is not int:
        raise InvalidJobsPage(f"job {job_id[:64]} has a {field} that is not a whole number")
    if not 0 <= value <= MAX_USER_COUNT:
        raise InvalidJobsPage(f"job {job_id[:64]} has a {field} out of range")
    return value
