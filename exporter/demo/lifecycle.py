"""A simulated import job: what is drawn for it when it is created, what may be changed of
it, how it looks in an answer, and how it moves from phase to phase on a compressed clock
(Created -> Pending -> InProgress -> Succeeded or Failed, Stopping -> Stopped, Created ->
Expired), counting users as it imports them.

Plain functions on a `SimulatedJob`; the model calls them with its lock held.
"""

from __future__ import annotations

import math
import random
import re
import string
import time
from collections.abc import Container
from dataclasses import dataclass
from typing import Literal, get_args

JobStatus = Literal[
    "Created", "Pending", "InProgress", "Stopping", "Expired", "Stopped", "Failed", "Succeeded"
]
JOB_STATUSES: frozenset[str] = frozenset(get_args(JobStatus))
TERMINAL_STATUSES: frozenset[str] = frozenset({"Expired", "Stopped", "Failed", "Succeeded"})
SUCCEEDED_MESSAGE = "Import Job Completed Successfully."
FAILED_MESSAGE = "Import Job Failed: too many users could not be imported."
STOPPED_MESSAGE = "Import Job Stopped By User."
EXPIRED_MESSAGE = "Import Job Expired: it was not started in time."
JOB_ID_ALPHABET = string.ascii_letters + string.digits
FLOOR_EPSILON = 1e-9
# the last second of year 9999: a job created later still gets a URL
_LAST_STAMPABLE = 253402300799.0

JsonObject = dict[str, object]


@dataclass(frozen=True)
class Lifecycle:
    """Seconds of each phase on the compressed clock, and how jobs are drawn.

    Real jobs expire after a day or two and import thousands of users over minutes; here every
    phase is seconds long so that a demo shows movement and a fake clock steps through it.
    """

    expire_after: float = 120.0
    pending_seconds: float = 5.0
    stopping_seconds: float = 3.0
    users_per_second: float = 200.0
    min_users: int = 100
    max_users: int = 5000
    skip_ratio: float = 0.02
    user_failure_ratio: float = 0.01
    ratio_jitter: float = 0.5
    failure_probability: float = 0.1
    operator_start_after: float = 10.0
    abandon_probability: float = 0.1
    new_job_every: float | None = None
    arrival_jitter: float = 0.5


@dataclass(frozen=True)
class JobDraw:
    """What is drawn at random for a new job, from the seed, the pool and its sequence."""

    job_id: str
    signature: str
    credential: str
    total_users: int
    skip_ratio: float
    user_failure_ratio: float
    fails_at: float | None
    operator_delay: float | None


@dataclass
class SimulatedJob:
    seq: int
    job_id: str
    pool_id: str
    name: str
    role_arn: str
    presigned_url: str
    status: str
    created: float
    started: float | None
    completed: float | None
    imported: int
    skipped: int
    failed: int
    total_users: int
    completion_message: str | None
    live: bool
    skip_ratio: float
    user_failure_ratio: float
    fails_at: float | None
    start_at: float | None = None
    progress_since: float | None = None
    base_imported: int = 0
    base_skipped: int = 0
    base_failed: int = 0
    stop_requested_at: float | None = None
    operator_delay: float | None = None

    @property
    def key(self) -> tuple[float, int]:
        return (self.created, self.seq)

    @property
    def processed(self) -> int:
        return self.imported + self.skipped + self.failed

    @property
    def base_processed(self) -> int:
        return self.base_imported + self.base_skipped + self.base_failed


_TEXTS = {"name": False, "completion_message": True, "role_arn": False}
_TIMES = {"created": False, "started": True, "completed": True}
_COUNTS = {"imported", "skipped", "failed", "total_users"}
CHANGEABLE_FIELDS = frozenset({*_TEXTS, *_TIMES, *_COUNTS, "status", "live"})


def checked_change(name: str, value: object) -> object:
    """`value` when it fits the job's field `name`; TypeError or ValueError otherwise."""
    if name in _TEXTS and (isinstance(value, str) or (_TEXTS[name] and value is None)):
        return value
    if name in _TIMES:
        if value is None and _TIMES[name]:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"{name} must be epoch seconds")
    if name in _COUNTS and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if name == "status":
        if not isinstance(value, str) or value not in JOB_STATUSES:
            raise ValueError(f"unknown job status {value!r}")
        return value
    if name == "live" and isinstance(value, bool):
        return value
    raise TypeError(f"{name}: {value!r} does not fit")


def floor_of(value: float) -> int:
    """Floor that forgives float noise, so 98 * (0.01 / 0.98) counts as 1 user, not 0."""
    return math.floor(value + FLOOR_EPSILON)


def split_users(count: int, skip_ratio: float, failure_ratio: float) -> tuple[int, int, int]:
    """(imported, skipped, failed) for ``count`` users; each part never shrinks as count grows."""
    skipped = floor_of(count * skip_ratio)
    rest = count - skipped
    failure_share = min(1.0, failure_ratio / (1.0 - skip_ratio)) if skip_ratio < 1.0 else 0.0
    failed = floor_of(rest * failure_share)
    return rest - failed, skipped, failed


def draw_job(
    seed: int, pool_id: str, seq: int, taken: Container[str], lifecycle: Lifecycle
) -> JobDraw:
    """What a new job is: its id (one not `taken`), totals, ratios, and how it will end."""
    rng = random.Random(f"{seed}/{pool_id}/{seq}")  # noqa: S311 - reproducible on purpose
    lc = lifecycle
    job_id = "import-" + "".join(rng.choices(JOB_ID_ALPHABET, k=26))
    while job_id in taken:
        job_id = "import-" + "".join(rng.choices(JOB_ID_ALPHABET, k=26))
    signature = f"{rng.getrandbits(256):064x}"
    credential = "ASIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16))
    total = rng.randint(min(lc.min_users, lc.max_users), max(lc.min_users, lc.max_users))
    skip_jitter = 1.0 + lc.ratio_jitter * rng.uniform(-1.0, 1.0)
    failure_jitter = 1.0 + lc.ratio_jitter * rng.uniform(-1.0, 1.0)
    fails = rng.random() < lc.failure_probability
    fail_point = rng.uniform(0.2, 0.8)
    abandoned = rng.random() < lc.abandon_probability
    delay = lc.operator_start_after * (1.0 + lc.arrival_jitter * rng.uniform(-1.0, 1.0))
    return JobDraw(
        job_id=job_id,
        signature=signature,
        credential=credential,
        total_users=total,
        skip_ratio=min(1.0, max(0.0, lc.skip_ratio * skip_jitter)),
        user_failure_ratio=min(1.0, max(0.0, lc.user_failure_ratio * failure_jitter)),
        fails_at=fail_point if fails else None,
        operator_delay=None if abandoned else max(0.0, delay),
    )


def job_view(job: SimulatedJob) -> JsonObject:
    view: JsonObject = {
        "JobName": job.name,
        "JobId": job.job_id,
        "UserPoolId": job.pool_id,
        "PreSignedUrl": job.presigned_url,
        "CreationDate": job.created,
    }
    if job.started is not None:
        view["StartDate"] = job.started
    if job.completed is not None:
        view["CompletionDate"] = job.completed
    view["Status"] = job.status
    if job.role_arn:  # an empty role: a job that writes no log
        view["CloudWatchLogsRoleArn"] = job.role_arn
    view.update(
        ImportedUsers=job.imported,
        SkippedUsers=job.skipped,
        FailedUsers=job.failed,
    )
    if job.completion_message is not None:
        view["CompletionMessage"] = job.completion_message
    return view


DEFAULT_REGION = "eu-west-1"
REGION_PATTERN = re.compile(r"[a-z]{2,4}(-[a-z]+)+-\d+", re.ASCII)


def region_of(pool_id: str) -> str:
    """The region a pool id names, or the simulator's default."""
    prefix = pool_id.split("_", 1)[0]
    return prefix if REGION_PATTERN.fullmatch(prefix) else DEFAULT_REGION


def presigned_url(account_id: str, region: str, pool_id: str, draw: JobDraw, created: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(min(created, _LAST_STAMPABLE)))
    return (
        f"https://cognito-idp-import-{region}.s3.{region}.amazonaws.com/"
        f"{account_id}/{pool_id}/{draw.job_id}"
        f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={stamp}"
        "&X-Amz-SignedHeaders=host%3Bx-amz-server-side-encryption&X-Amz-Expires=86400"
        f"&X-Amz-Credential={draw.credential}%2F{stamp[:8]}%2F{region}%2Fs3%2Faws4_request"
        f"&X-Amz-Signature={draw.signature}"
    )


def advance_job(job: SimulatedJob, now: float, lifecycle: Lifecycle) -> None:
    """Every phase change due by `now`, each at its own moment, then the progress so far."""
    while (at := next_transition_at(job, lifecycle)) is not None and at <= now:
        _transition(job, at, lifecycle)
    if job.status == "InProgress":
        progress_to(job, now, lifecycle)


def next_transition_at(job: SimulatedJob, lifecycle: Lifecycle) -> float | None:
    lc = lifecycle
    if job.status == "Created":
        expiry = job.created + lc.expire_after
        return expiry if job.start_at is None else min(job.start_at, expiry)
    if job.status == "Pending":
        return (job.started if job.started is not None else job.created) + lc.pending_seconds
    if job.status == "InProgress":
        if lc.users_per_second <= 0 or job.progress_since is None:
            return None
        remaining = _end_users(job) - job.base_processed
        return job.progress_since + max(0, remaining) / lc.users_per_second
    if job.status == "Stopping":
        requested = job.stop_requested_at if job.stop_requested_at is not None else job.created
        return requested + lc.stopping_seconds
    return None


def rebase_progress(job: SimulatedJob, at: float) -> None:
    """Progress from here on counts from the job's counts as they are now."""
    job.progress_since = at
    job.base_imported, job.base_skipped, job.base_failed = job.imported, job.skipped, job.failed


def progress_to(job: SimulatedJob, now: float, lifecycle: Lifecycle) -> None:
    if job.progress_since is None:
        return
    elapsed = max(0.0, now - job.progress_since)
    limit = _end_users(job) - job.base_processed
    _set_progress(job, min(limit, floor_of(elapsed * lifecycle.users_per_second)))


def _transition(job: SimulatedJob, at: float, lifecycle: Lifecycle) -> None:
    if job.status == "Created":
        if job.start_at is not None and job.start_at <= job.created + lifecycle.expire_after:
            job.status, job.started, job.start_at = "Pending", at, None
        else:
            _finish(job, "Expired", at, EXPIRED_MESSAGE)
    elif job.status == "Pending":
        job.status = "InProgress"
        rebase_progress(job, at)
    elif job.status == "InProgress":
        end = _end_users(job)
        _set_progress(job, end - job.base_processed)
        if job.fails_at is not None and end < job.total_users:
            _finish(job, "Failed", at, FAILED_MESSAGE)
        else:
            _finish(job, "Succeeded", at, SUCCEEDED_MESSAGE)
    elif job.status == "Stopping":
        _finish(job, "Stopped", at, STOPPED_MESSAGE)


def _finish(job: SimulatedJob, status: str, at: float, message: str) -> None:
    job.status = status
    job.completed = at
    job.completion_message = message


def _end_users(job: SimulatedJob) -> int:
    total = max(job.total_users, job.base_processed)
    if job.fails_at is None:
        return total
    return min(total, max(job.base_processed, floor_of(total * job.fails_at)))


def _set_progress(job: SimulatedJob, new_users: int) -> None:
    imported, skipped, failed = split_users(
        max(0, new_users), job.skip_ratio, job.user_failure_ratio
    )
    job.imported = job.base_imported + imported
    job.skipped = job.base_skipped + skipped
    job.failed = job.base_failed + failed
