"""The stand-in Cognito user-pools endpoint used by the demo, the tests and the benchmark.

A small model of the service (pools, their import jobs and the jobs' lifecycle on a compressed
clock) served over awsJson1.1, so that real botocore can talk to it. Fault knobs (latency,
throttling, failing pools, malformed answers) are flipped at run time through ``Faults``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import hashlib
import hmac
import json
import math
import random
import re
import socket
import ssl
import string
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, get_args
from xml.sax.saxutils import escape as xml_escape

import orjson

TARGET_PREFIX = "AWSCognitoIdentityProviderService."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "eu-west-1"
PAGE_LIMIT = 60
POOL_ID_MAX_LENGTH = 55
LIST_CALL_HISTORY = 10_000

JobStatus = Literal[
    "Created", "Pending", "InProgress", "Stopping", "Expired", "Stopped", "Failed", "Succeeded"
]
JOB_STATUSES: frozenset[str] = frozenset(get_args(JobStatus))
TERMINAL_STATUSES: frozenset[str] = frozenset({"Expired", "Stopped", "Failed", "Succeeded"})
GarbageMode = Literal["text", "empty", "truncated", "wrong_shape", "repeat_token"]
GARBAGE_MODES: frozenset[str] = frozenset(get_args(GarbageMode))

SUCCEEDED_MESSAGE = "Import Job Completed Successfully."
FAILED_MESSAGE = "Import Job Failed: too many users could not be imported."
STOPPED_MESSAGE = "Import Job Stopped By User."
EXPIRED_MESSAGE = "Import Job Expired: it was not started in time."

POOL_ID_PATTERN = re.compile(r"[\w-]+_[0-9a-zA-Z]+")
JOB_ID_PATTERN = re.compile(r"import-[0-9a-zA-Z-]+")
JOB_NAME_PATTERN = re.compile(r"[\w\s+=,.@-]+")
JOB_NAME_UNSAFE = re.compile(r"[^\w\s+=,.@-]")
ROLE_ARN_PATTERN = re.compile(
    r"arn:[\w+=/,.@-]+:[\w+=/,.@-]+:([\w+=/,.@-]*)?:[0-9]+:[\w+=/,.@-]+"
    r"(:[\w+=/,.@-]+)?(:[\w+=/,.@-]+)?"
)
REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
JOB_ID_ALPHABET = string.ascii_letters + string.digits
FLOOR_EPSILON = 1e-9

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


@dataclass
class Faults:
    """Run-time fault knobs, read afresh on every request."""

    latency: float = 0.0
    throttle_rate: float = 0.0
    failing_pools: dict[str, str] = field(default_factory=dict)
    slow_pools: dict[str, float] = field(default_factory=dict)
    slow_operations: dict[str, float] = field(default_factory=dict)
    garbage_pools: set[str] = field(default_factory=set)
    garbage_mode: GarbageMode = "text"
    # seconds between the bytes of every answer for the pool, status line included
    drip_pools: dict[str, float] = field(default_factory=dict)
    # ListUserPools tokens that come round again: A, B, A, ...
    cycling_pool_tokens: bool = False
    # error messages of failing pools and of AssumeRole echo the caller's credentials
    echo_credentials: bool = False
    # AssumeRole answers with this error code
    assume_role_error: str | None = None

    def clear(self) -> None:
        self.latency = 0.0
        self.throttle_rate = 0.0
        self.failing_pools.clear()
        self.slow_pools.clear()
        self.slow_operations.clear()
        self.garbage_pools.clear()
        self.garbage_mode = "text"
        self.drip_pools.clear()
        self.cycling_pool_tokens = False
        self.echo_credentials = False
        self.assume_role_error = None


class ServiceError(Exception):
    """An error the service answers with: its ``__type`` code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return http_status_of(self.code)


def http_status_of(code: str) -> int:
    return 500 if code in {"InternalErrorException", "InternalFailure"} else 400


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    drip: float = 0.0


def json_reply(payload: JsonObject) -> Reply:
    # orjson: a 60-job page is 51 kB, and json.dumps took most of the simulator's time on it
    return Reply(200, orjson.dumps(payload))


def error_reply(code: str, message: str) -> Reply:
    body = json.dumps({"__type": code, "message": message}).encode()
    return Reply(http_status_of(code), body)


@dataclass
class _Job:
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


@dataclass
class _Pool:
    pool_id: str
    name: str
    tags: dict[str, str]
    created: float
    modified: float
    spawning: bool
    arrivals: random.Random
    jobs: dict[str, _Job] = field(default_factory=dict)
    order: list[tuple[float, int, str]] = field(default_factory=list)
    next_arrival: float | None = None
    spawned: int = 0


@dataclass(frozen=True)
class _JobDraw:
    job_id: str
    signature: str
    credential: str
    total_users: int
    skip_ratio: float
    user_failure_ratio: float
    fails_at: float | None
    operator_delay: float | None


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


def region_of(pool_id: str) -> str:
    prefix = pool_id.split("_", 1)[0]
    return prefix if REGION_PATTERN.fullmatch(prefix) else DEFAULT_REGION


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SimulatedCognito:
    """Pools and their import jobs, moved along by ``advance()`` on the injected clock.

    Jobs added with ``add_job`` are history and stay exactly as given unless ``live=True``;
    jobs created through the API or arriving through ``spawn_job``/``Lifecycle.new_job_every``
    are live and follow the lifecycle. Everything drawn at random comes from the seed.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        *,
        lifecycle: Lifecycle | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.clock = clock
        self.seed = seed
        self.lifecycle = lifecycle or Lifecycle()
        self.account_id = account_id
        self.faults = Faults()
        self.calls: Counter[str] = Counter()
        self.calls_by_pool: Counter[str] = Counter()
        self.list_calls_at: deque[float] = deque(maxlen=LIST_CALL_HISTORY)
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = {}
        self._active: dict[int, _Job] = {}
        self._next_seq = 0
        self._throttle_rng = random.Random(f"{seed}/throttle")  # noqa: S311 - seeded on purpose
        self._token_key = hashlib.sha256(f"cognito-simulator/{seed}".encode()).digest()
        self._operations: dict[str, Callable[[JsonObject], JsonObject]] = {
            "ListUserImportJobs": self._list_user_import_jobs,
            "DescribeUserImportJob": self._describe_user_import_job,
            "CreateUserImportJob": self._create_user_import_job,
            "StartUserImportJob": self._start_user_import_job,
            "StopUserImportJob": self._stop_user_import_job,
            "ListUserPools": self._list_user_pools,
            "DescribeUserPool": self._describe_user_pool,
        }

    # ----- pools and jobs, for the demo and the tests -----

    def add_pool(
        self,
        pool_id: str,
        name: str,
        tags: Mapping[str, str] | None = None,
        *,
        created: float | None = None,
        spawning: bool = True,
    ) -> None:
        if not POOL_ID_PATTERN.fullmatch(pool_id) or len(pool_id) > POOL_ID_MAX_LENGTH:
            raise ValueError(f"not a user pool id: {pool_id!r}")
        with self._lock:
            if pool_id in self._pools:
                raise ValueError(f"user pool {pool_id} already exists")
            when = self.clock() if created is None else created
            self._pools[pool_id] = _Pool(
                pool_id=pool_id,
                name=name,
                tags=dict(tags or {}),
                created=when,
                modified=when,
                spawning=spawning,
                arrivals=random.Random(f"{self.seed}/{pool_id}/arrivals"),  # noqa: S311
            )

    def set_pool(
        self,
        pool_id: str,
        *,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        spawning: bool | None = None,
    ) -> None:
        with self._lock:
            pool = self._pool(pool_id)
            if name is not None:
                pool.name = name
            if tags is not None:
                pool.tags = dict(tags)
            if spawning is not None:
                pool.spawning = spawning
            pool.modified = self.clock()

    def pool_ids(self) -> list[str]:
        with self._lock:
            return list(self._pools)

    def add_job(
        self,
        pool_id: str,
        *,
        name: str,
        status: str,
        created: float,
        started: float | None = None,
        completed: float | None = None,
        imported: int = 0,
        skipped: int = 0,
        failed: int = 0,
        total_users: int = 0,
        completion_message: str | None = None,
        live: bool = False,
        role_arn: str | None = None,
    ) -> str:
        """Add a job to a pool's history and return its JobId.

        ``total_users=0`` draws a total from the lifecycle; it only matters once the job is live.
        """
        if status not in JOB_STATUSES:
            raise ValueError(f"unknown job status {status!r}")
        with self._lock:
            pool = self._pool(pool_id)
            job = self._new_job(pool, name=name, created=float(created), role_arn=role_arn)
            job.status = status
            job.started = started
            job.completed = completed
            job.imported, job.skipped, job.failed = imported, skipped, failed
            job.total_users = max(
                job.total_users if total_users <= 0 else total_users, job.processed
            )
            job.completion_message = completion_message
            job.live = live
            self._rebase_progress(job, self.clock())
            self._insert_job(pool, job)
            return job.job_id

    def set_job(self, pool_id: str, job_id: str, **changes: object) -> None:
        """Change a job anywhere in a pool's history, as of now.

        Takes the ``add_job`` keywords plus ``live``. Moving a job to a finished status without
        ``completed`` stamps it now; a live job's progress carries on from the new counts.
        """
        unknown = set(changes) - _JOB_CHANGE_FIELDS
        if unknown:
            raise TypeError(f"set_job got unknown fields: {sorted(unknown)}")
        with self._lock:
            now = self.clock()
            self._advance_locked(now)
            pool = self._pool(pool_id)
            job = self._job(pool, job_id)
            self._apply_changes(pool, job, changes, now)

    def jobs(self, pool_id: str) -> list[JsonObject]:
        """The pool's jobs newest first, as of the last ``advance()`` (what the last answer saw)."""
        with self._lock:
            pool = self._pool(pool_id)
            return [job_view(pool.jobs[job_id]) for _, _, job_id in reversed(pool.order)]

    def job(self, pool_id: str, job_id: str) -> JsonObject:
        with self._lock:
            return job_view(self._job(self._pool(pool_id), job_id))

    def total_users(self, pool_id: str, job_id: str) -> int:
        with self._lock:
            return self._job(self._pool(pool_id), job_id).total_users

    def create_job(self, pool_id: str, name: str, role_arn: str | None = None) -> str:
        with self._lock:
            now = self.clock()
            self._advance_locked(now)
            pool = self._pool(pool_id)
            job = self._new_job(pool, name=name, created=now, role_arn=role_arn)
            self._insert_job(pool, job)
            return job.job_id

    def start_job(self, pool_id: str, job_id: str) -> None:
        with self._lock:
            now = self.clock()
            self._advance_locked(now)
            self._start_requested(self._job(self._pool(pool_id), job_id), now)

    def stop_job(self, pool_id: str, job_id: str) -> None:
        with self._lock:
            now = self.clock()
            self._advance_locked(now)
            self._stop_requested(self._job(self._pool(pool_id), job_id), now)

    def spawn_job(self, pool_id: str) -> str:
        """A job arrives now as the simulated operator makes them: created, then started soon."""
        with self._lock:
            now = self.clock()
            self._advance_locked(now)
            return self._spawn(self._pool(pool_id), now).job_id

    def advance(self) -> None:
        with self._lock:
            self._advance_locked(self.clock())

    # ----- call accounting -----

    def call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls)

    def pool_call_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.calls_by_pool)

    def list_call_times(self) -> list[float]:
        with self._lock:
            return list(self.list_calls_at)

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.calls_by_pool.clear()
            self.list_calls_at.clear()

    # ----- the wire -----

    def respond(
        self, target: str | None, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Answer one awsJson1.1 request (or an STS query request). A latency fault is the
        time the answer takes from arrival, the simulator's own work included, slept out in
        the caller's thread."""
        arrived = time.monotonic()
        headers = headers or {}
        if target is None and body.startswith(b"Action="):
            return self._respond_sts(body, headers)
        delay = 0.0
        pool_key: str | None = None
        try:
            operation = self._operation_of(target)
            self._count_call(operation)
            params = parsed_params(body)
            pool_id = params.get("UserPoolId")
            pool_key = pool_id if isinstance(pool_id, str) else None
            if operation == "ListUserImportJobs" and pool_key is not None:
                self._count_pool_call(pool_key)
            delay = self._latency_for(pool_key) + self.faults.slow_operations.get(operation, 0.0)
            reply = self._answer(operation, params, pool_key, headers)
        except ServiceError as error:
            reply = error_reply(error.code, error.message)
        except Exception as error:
            reply = error_reply("InternalErrorException", f"simulator error: {error!r}")
        left = arrived + delay - time.monotonic()
        if left > 0:
            time.sleep(left)
        drip = self.faults.drip_pools.get(pool_key or "", 0.0)
        return replace(reply, drip=drip) if drip else reply

    def _respond_sts(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        params = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()}
        action = params.get("Action", "")
        self._count_call(action)
        if action != "AssumeRole":
            return sts_error_reply("InvalidAction", f"Could not find operation {action}.")
        error = self.faults.assume_role_error
        if error is not None:
            message = (
                f"User is not authorized to perform: sts:AssumeRole on {params.get('RoleArn')}"
            )
            if self.faults.echo_credentials:
                message += f" (ExternalId {params.get('ExternalId')}, {_credential_of(headers)})"
            return sts_error_reply(error, message)
        return sts_assume_role_reply(params, self.clock(), self._throttle_rng)

    def _answer(
        self, operation: str, params: JsonObject, pool_key: str | None, headers: Mapping[str, str]
    ) -> Reply:
        self._raise_if_throttled()
        faults = self.faults
        if pool_key is not None and pool_key in faults.failing_pools:
            code = faults.failing_pools[pool_key]
            message = f"Simulated failure for user pool {pool_key}."
            if faults.echo_credentials:
                message += f" Request signed with {_credential_of(headers)}."
            raise ServiceError(code, message)
        garbage = pool_key is not None and pool_key in faults.garbage_pools
        mode = faults.garbage_mode
        if garbage and mode in {"text", "empty", "wrong_shape"}:
            return garbage_reply(mode)
        with self._lock:
            self._advance_locked(self.clock())
            result = self._operations[operation](params)
            if garbage and mode == "repeat_token" and operation == "ListUserImportJobs":
                result["PaginationToken"] = self._same_page_token(params)
        reply = json_reply(result)
        if garbage and mode == "truncated":
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _operation_of(self, target: str | None) -> str:
        operation = (target or "").removeprefix(TARGET_PREFIX)
        if (
            target is None
            or not target.startswith(TARGET_PREFIX)
            or operation not in self._operations
        ):
            raise ServiceError("UnknownOperationException", f"Unknown operation {target!r}.")
        return operation

    def _count_call(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def _count_pool_call(self, pool_id: str) -> None:
        with self._lock:
            self.calls_by_pool[pool_id] += 1
            self.list_calls_at.append(self.clock())

    def _latency_for(self, pool_id: str | None) -> float:
        faults = self.faults
        return faults.latency + (faults.slow_pools.get(pool_id, 0.0) if pool_id else 0.0)

    def _raise_if_throttled(self) -> None:
        rate = self.faults.throttle_rate
        if rate <= 0:
            return
        with self._lock:
            throttled = self._throttle_rng.random() < rate
        if throttled:
            raise ServiceError("TooManyRequestsException", "Rate exceeded")

    # ----- operations (lock held) -----

    def _list_user_import_jobs(self, params: JsonObject) -> JsonObject:
        pool_id = pool_id_param(params)
        limit = limit_param(params, "MaxResults", "maxResults")
        token = optional_token_param(params, "PaginationToken", "paginationToken")
        pool = self._pool(pool_id)
        end = len(pool.order) if token is None else self._jobs_cursor_index(pool, token)
        start = max(0, end - limit)
        page = [job_view(pool.jobs[job_id]) for _, _, job_id in reversed(pool.order[start:end])]
        result: JsonObject = {"UserImportJobs": page}
        if start > 0:
            created, seq, _ = pool.order[start]
            result["PaginationToken"] = self._token(
                {"k": "jobs", "p": pool_id, "c": [created, seq]}
            )
        return result

    def _describe_user_import_job(self, params: JsonObject) -> JsonObject:
        pool = self._pool(pool_id_param(params))
        return {"UserImportJob": job_view(self._job(pool, job_id_param(params)))}

    def _create_user_import_job(self, params: JsonObject) -> JsonObject:
        pool = self._pool(pool_id_param(params))
        name = job_name_param(params)
        role_arn = role_arn_param(params)
        job = self._new_job(pool, name=name, created=self.clock(), role_arn=role_arn)
        self._insert_job(pool, job)
        return {"UserImportJob": job_view(job)}

    def _start_user_import_job(self, params: JsonObject) -> JsonObject:
        job = self._job(self._pool(pool_id_param(params)), job_id_param(params))
        self._start_requested(job, self.clock())
        return {"UserImportJob": job_view(job)}

    def _stop_user_import_job(self, params: JsonObject) -> JsonObject:
        job = self._job(self._pool(pool_id_param(params)), job_id_param(params))
        self._stop_requested(job, self.clock())
        return {"UserImportJob": job_view(job)}

    def _list_user_pools(self, params: JsonObject) -> JsonObject:
        limit = limit_param(params, "MaxResults", "maxResults")
        token = optional_token_param(params, "NextToken", "nextToken")
        pools = list(self._pools.values())
        start = 0 if token is None else self._pools_cursor_index(token, len(pools))
        page = pools[start : start + limit]
        result: JsonObject = {"UserPools": [pool_summary(pool) for pool in page]}
        if self.faults.cycling_pool_tokens:
            # A, B, A, B, ...: each token names the other one's place
            result["NextToken"] = self._token({"k": "pools", "i": 0 if start else 1})
        elif start + limit < len(pools):
            result["NextToken"] = self._token({"k": "pools", "i": start + limit})
        return result

    def _describe_user_pool(self, params: JsonObject) -> JsonObject:
        pool = self._pool(pool_id_param(params))
        return {"UserPool": self._pool_view(pool)}

    def _pool_view(self, pool: _Pool) -> JsonObject:
        region = region_of(pool.pool_id)
        return {
            "Id": pool.pool_id,
            "Name": pool.name,
            "Arn": f"arn:aws:cognito-idp:{region}:{self.account_id}:userpool/{pool.pool_id}",
            "UserPoolTags": dict(pool.tags),
            "CreationDate": pool.created,
            "LastModifiedDate": pool.modified,
            "Status": "Enabled",
            "EstimatedNumberOfUsers": sum(job.imported for job in pool.jobs.values()),
            "MfaConfiguration": "OFF",
            "DeletionProtection": "INACTIVE",
        }

    # ----- lookups and tokens -----

    def _pool(self, pool_id: str) -> _Pool:
        pool = self._pools.get(pool_id)
        if pool is None:
            raise ServiceError("ResourceNotFoundException", f"User pool {pool_id} does not exist.")
        return pool

    def _job(self, pool: _Pool, job_id: str) -> _Job:
        job = pool.jobs.get(job_id)
        if job is None:
            raise ServiceError(
                "ResourceNotFoundException",
                f"Import job {job_id} does not exist in user pool {pool.pool_id}.",
            )
        return job

    def _token(self, cursor: JsonObject) -> str:
        payload = _b64(json.dumps(cursor, separators=(",", ":")).encode())
        mac = hmac.new(self._token_key, payload.encode(), hashlib.sha256).digest()[:16]
        return f"{payload}.{_b64(mac)}"

    def _cursor_of(self, token: str) -> JsonObject:
        payload, _, mac = token.partition(".")
        try:
            expected = hmac.new(self._token_key, payload.encode(), hashlib.sha256).digest()[:16]
            if not hmac.compare_digest(_unb64(mac), expected):
                raise ValueError("signature mismatch")
            cursor = json.loads(_unb64(payload))
        except (ValueError, binascii.Error, UnicodeError) as error:
            raise invalid_token() from error
        if not isinstance(cursor, dict):
            raise invalid_token()
        return cursor

    def _jobs_cursor_index(self, pool: _Pool, token: str) -> int:
        cursor = self._cursor_of(token)
        position = cursor.get("c")
        if cursor.get("k") != "jobs" or cursor.get("p") != pool.pool_id:
            raise invalid_token()
        if position is None:
            return len(pool.order)
        if not (isinstance(position, list) and len(position) == 2):
            raise invalid_token()
        created, seq = position
        if not isinstance(created, (int, float)) or not isinstance(seq, int):
            raise invalid_token()
        return _bisect_left(pool.order, (float(created), seq))

    def _pools_cursor_index(self, token: str, pool_count: int) -> int:
        cursor = self._cursor_of(token)
        index = cursor.get("i")
        if cursor.get("k") != "pools" or not isinstance(index, int) or not 0 <= index <= pool_count:
            raise invalid_token()
        return index

    def _same_page_token(self, params: JsonObject) -> str:
        token = params.get("PaginationToken")
        if isinstance(token, str):
            return token
        return self._token({"k": "jobs", "p": params.get("UserPoolId"), "c": None})

    # ----- the lifecycle (lock held) -----

    def _new_job(self, pool: _Pool, *, name: str, created: float, role_arn: str | None) -> _Job:
        seq = self._next_seq
        self._next_seq += 1
        draw = self._job_draw(pool, seq)
        region = region_of(pool.pool_id)
        return _Job(
            seq=seq,
            job_id=draw.job_id,
            pool_id=pool.pool_id,
            name=name,
            role_arn=role_arn or f"arn:aws:iam::{self.account_id}:role/CognitoImportLogs",
            presigned_url=presigned_url(self.account_id, region, pool.pool_id, draw, created),
            status="Created",
            created=created,
            started=None,
            completed=None,
            imported=0,
            skipped=0,
            failed=0,
            total_users=draw.total_users,
            completion_message=None,
            live=True,
            skip_ratio=draw.skip_ratio,
            user_failure_ratio=draw.user_failure_ratio,
            fails_at=draw.fails_at,
            operator_delay=draw.operator_delay,
        )

    def _job_draw(self, pool: _Pool, seq: int) -> _JobDraw:
        rng = random.Random(f"{self.seed}/{pool.pool_id}/{seq}")  # noqa: S311
        lc = self.lifecycle
        job_id = "import-" + "".join(rng.choices(JOB_ID_ALPHABET, k=26))
        while job_id in pool.jobs:
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
        return _JobDraw(
            job_id=job_id,
            signature=signature,
            credential=credential,
            total_users=total,
            skip_ratio=min(1.0, max(0.0, lc.skip_ratio * skip_jitter)),
            user_failure_ratio=min(1.0, max(0.0, lc.user_failure_ratio * failure_jitter)),
            fails_at=fail_point if fails else None,
            operator_delay=None if abandoned else max(0.0, delay),
        )

    def _insert_job(self, pool: _Pool, job: _Job) -> None:
        pool.jobs[job.job_id] = job
        entry = (job.created, job.seq, job.job_id)
        pool.order.insert(_bisect_left(pool.order, entry[:2]), entry)
        self._track(job)

    def _reorder_job(self, pool: _Pool, job: _Job, old_key: tuple[float, int]) -> None:
        pool.order.pop(_bisect_left(pool.order, old_key))
        entry = (job.created, job.seq, job.job_id)
        pool.order.insert(_bisect_left(pool.order, entry[:2]), entry)

    def _track(self, job: _Job) -> None:
        if job.live and job.status not in TERMINAL_STATUSES:
            self._active[job.seq] = job
        else:
            self._active.pop(job.seq, None)

    def _spawn(self, pool: _Pool, at: float) -> _Job:
        pool.spawned += 1
        name = f"{JOB_NAME_UNSAFE.sub('-', pool.name)}-import-{pool.spawned:04d}"
        job = self._new_job(pool, name=name, created=at, role_arn=None)
        job.start_at = None if job.operator_delay is None else at + job.operator_delay
        self._insert_job(pool, job)
        return job

    def _advance_locked(self, now: float) -> None:
        self._spawn_arrivals(now)
        for job in list(self._active.values()):
            self._advance_job(job, now)
            self._track(job)

    def _spawn_arrivals(self, now: float) -> None:
        every = self.lifecycle.new_job_every
        if every is None or every <= 0:
            return
        for pool in self._pools.values():
            if not pool.spawning:
                pool.next_arrival = None
                continue
            if pool.next_arrival is None:
                pool.next_arrival = now + self._arrival_gap(pool, every)
            while pool.next_arrival <= now:
                self._spawn(pool, pool.next_arrival)
                pool.next_arrival += self._arrival_gap(pool, every)

    def _arrival_gap(self, pool: _Pool, every: float) -> float:
        jitter = self.lifecycle.arrival_jitter
        return every * (1.0 + jitter * pool.arrivals.uniform(-1.0, 1.0))

    def _advance_job(self, job: _Job, now: float) -> None:
        while (at := self._next_transition_at(job)) is not None and at <= now:
            self._transition(job, at)
        if job.status == "InProgress":
            self._progress_to(job, now)

    def _next_transition_at(self, job: _Job) -> float | None:
        lc = self.lifecycle
        if job.status == "Created":
            expiry = job.created + lc.expire_after
            return expiry if job.start_at is None else min(job.start_at, expiry)
        if job.status == "Pending":
            return (job.started if job.started is not None else job.created) + lc.pending_seconds
        if job.status == "InProgress":
            if lc.users_per_second <= 0 or job.progress_since is None:
                return None
            remaining = self._end_users(job) - job.base_processed
            return job.progress_since + max(0, remaining) / lc.users_per_second
        if job.status == "Stopping":
            requested = job.stop_requested_at if job.stop_requested_at is not None else job.created
            return requested + lc.stopping_seconds
        return None

    def _transition(self, job: _Job, at: float) -> None:
        if job.status == "Created":
            if (
                job.start_at is not None
                and job.start_at <= job.created + self.lifecycle.expire_after
            ):
                self._start(job, at)
            else:
                self._finish(job, "Expired", at, EXPIRED_MESSAGE)
        elif job.status == "Pending":
            job.status = "InProgress"
            self._rebase_progress(job, at)
        elif job.status == "InProgress":
            self._finish_import(job, at)
        elif job.status == "Stopping":
            self._finish(job, "Stopped", at, STOPPED_MESSAGE)

    def _start(self, job: _Job, at: float) -> None:
        job.status = "Pending"
        job.started = at
        job.start_at = None

    def _finish(self, job: _Job, status: str, at: float, message: str) -> None:
        job.status = status
        job.completed = at
        job.completion_message = message

    def _finish_import(self, job: _Job, at: float) -> None:
        end = self._end_users(job)
        self._set_progress(job, end - job.base_processed)
        if job.fails_at is not None and end < job.total_users:
            self._finish(job, "Failed", at, FAILED_MESSAGE)
        else:
            self._finish(job, "Succeeded", at, SUCCEEDED_MESSAGE)

    def _end_users(self, job: _Job) -> int:
        total = max(job.total_users, job.base_processed)
        if job.fails_at is None:
            return total
        return min(total, max(job.base_processed, floor_of(total * job.fails_at)))

    def _rebase_progress(self, job: _Job, at: float) -> None:
        job.progress_since = at
        job.base_imported, job.base_skipped, job.base_failed = job.imported, job.skipped, job.failed

    def _progress_to(self, job: _Job, now: float) -> None:
        if job.progress_since is None:
            return
        elapsed = max(0.0, now - job.progress_since)
        limit = self._end_users(job) - job.base_processed
        self._set_progress(job, min(limit, floor_of(elapsed * self.lifecycle.users_per_second)))

    def _set_progress(self, job: _Job, new_users: int) -> None:
        imported, skipped, failed = split_users(
            max(0, new_users), job.skip_ratio, job.user_failure_ratio
        )
        job.imported = job.base_imported + imported
        job.skipped = job.base_skipped + skipped
        job.failed = job.base_failed + failed

    def _start_requested(self, job: _Job, now: float) -> None:
        if job.status != "Created":
            raise ServiceError(
                "PreconditionNotMetException",
                f"Import job {job.job_id} cannot be started: its status is {job.status}.",
            )
        job.live = True
        self._start(job, now)
        self._track(job)

    def _stop_requested(self, job: _Job, now: float) -> None:
        if job.status not in {"Pending", "InProgress"}:
            raise ServiceError(
                "PreconditionNotMetException",
                f"Import job {job.job_id} cannot be stopped: its status is {job.status}.",
            )
        if job.live and job.status == "InProgress":
            self._progress_to(job, now)
        job.live = True
        job.status = "Stopping"
        job.stop_requested_at = now
        self._track(job)

    def _apply_changes(
        self, pool: _Pool, job: _Job, changes: Mapping[str, object], now: float
    ) -> None:
        old_key = job.key
        old_status = job.status
        for name, value in changes.items():
            _JOB_CHANGE_SETTERS[name](job, value)
        if job.key != old_key:
            self._reorder_job(pool, job, old_key)
        finishing = job.status in TERMINAL_STATUSES and old_status not in TERMINAL_STATUSES
        if finishing and "completed" not in changes and job.completed is None:
            job.completed = now
        job.total_users = max(job.total_users, job.processed)
        if job.status == "Stopping" and old_status != "Stopping":
            job.stop_requested_at = now
        if job.status in {"Pending", "InProgress"} and job.started is None:
            job.started = now
        if job.status == "InProgress":
            self._rebase_progress(job, now)
        self._track(job)


def _bisect_left(order: list[tuple[float, int, str]], key: tuple[float, int]) -> int:
    return bisect.bisect_left(order, key, key=lambda entry: entry[:2])


def _set_str(attribute: str, optional: bool = False) -> Callable[[_Job, object], None]:
    def setter(job: _Job, value: object) -> None:
        if not (isinstance(value, str) or (optional and value is None)):
            raise TypeError(f"{attribute} must be a string")
        setattr(job, attribute, value)

    return setter


def _set_time(attribute: str, optional: bool = True) -> Callable[[_Job, object], None]:
    def setter(job: _Job, value: object) -> None:
        if value is None and optional:
            setattr(job, attribute, None)
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{attribute} must be epoch seconds")
        setattr(job, attribute, float(value))

    return setter


def _set_count(attribute: str) -> Callable[[_Job, object], None]:
    def setter(job: _Job, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TypeError(f"{attribute} must be a non-negative int")
        setattr(job, attribute, value)

    return setter


def _set_status(job: _Job, value: object) -> None:
    if not isinstance(value, str) or value not in JOB_STATUSES:
        raise ValueError(f"unknown job status {value!r}")
    job.status = value


def _set_live(job: _Job, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError("live must be a bool")
    job.live = value


_JOB_CHANGE_SETTERS: dict[str, Callable[[_Job, object], None]] = {
    "name": _set_str("name"),
    "status": _set_status,
    "created": _set_time("created", optional=False),
    "started": _set_time("started"),
    "completed": _set_time("completed"),
    "imported": _set_count("imported"),
    "skipped": _set_count("skipped"),
    "failed": _set_count("failed"),
    "total_users": _set_count("total_users"),
    "completion_message": _set_str("completion_message", optional=True),
    "live": _set_live,
    "role_arn": _set_str("role_arn"),
}
_JOB_CHANGE_FIELDS = frozenset(_JOB_CHANGE_SETTERS)


def job_view(job: _Job) -> JsonObject:
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
    view.update(
        Status=job.status,
        CloudWatchLogsRoleArn=job.role_arn,
        ImportedUsers=job.imported,
        SkippedUsers=job.skipped,
        FailedUsers=job.failed,
    )
    if job.completion_message is not None:
        view["CompletionMessage"] = job.completion_message
    return view


def pool_summary(pool: _Pool) -> JsonObject:
    return {
        "Id": pool.pool_id,
        "Name": pool.name,
        "CreationDate": pool.created,
        "LastModifiedDate": pool.modified,
        "Status": "Enabled",
    }


def presigned_url(
    account_id: str, region: str, pool_id: str, draw: _JobDraw, created: float
) -> str:
    # the last second of year 9999: a job created later still gets a URL
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(min(created, 253402300799.0)))
    return (
        f"https://cognito-idp-import-{region}.s3.{region}.amazonaws.com/"
        f"{account_id}/{pool_id}/{draw.job_id}"
        f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={stamp}"
        "&X-Amz-SignedHeaders=host%3Bx-amz-server-side-encryption&X-Amz-Expires=86400"
        f"&X-Amz-Credential={draw.credential}%2F{stamp[:8]}%2F{region}%2Fs3%2Faws4_request"
        f"&X-Amz-Signature={draw.signature}"
    )


def _credential_of(headers: Mapping[str, str]) -> str:
    """What a careless service might echo: the request's credential and session token."""
    authorization = headers.get("Authorization", "")
    credential = authorization.partition("Credential=")[2].partition(",")[0]
    return f"credential {credential} token {headers.get('X-Amz-Security-Token', '')}"


STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"


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


def garbage_reply(mode: str) -> Reply:
    if mode == "empty":
        return Reply(200, b"")
    if mode == "wrong_shape":
        body = {"UserImportJobs": {"JobId": 42}, "UserPool": ["not", "a", "pool"], "UserPools": 7}
        return json_reply(body)
    return Reply(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")


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


def job_name_param(params: JsonObject) -> str:
    return patterned_param(params, "JobName", "jobName", JOB_NAME_PATTERN, (1, 128))


def role_arn_param(params: JsonObject) -> str:
    return patterned_param(
        params, "CloudWatchLogsRoleArn", "cloudWatchLogsRoleArn", ROLE_ARN_PATTERN, (20, 2048)
    )


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


class _SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connections when a cold exporter opens its
    # whole pool at once, and each dropped SYN costs the client a one-second retransmit
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], model: SimulatedCognito) -> None:
        self.model = model
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _SimulatorHandler)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
            self.connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _SimulatorHandler(BaseHTTPRequestHandler):
    server: _SimulatorHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60.0

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name: value for name, value in self.headers.items()}
        reply = self.server.model.respond(self.headers.get("X-Amz-Target"), body, headers)
        if reply.drip > 0:
            self._drip(reply)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(reply.body)

    def _drip(self, reply: Reply) -> None:
        """The whole answer a byte at a time, for as long as the client keeps reading."""
        raw = (
            f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n\r\n"
        ).encode() + reply.body
        self.close_connection = True
        for index in range(len(raw)):
            try:
                self.wfile.write(raw[index : index + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(reply.drip)

    def log_message(self, format: str, *args: object) -> None:
        return


class SimulatorServer:
    """Serves a ``SimulatedCognito`` over HTTP; optionally ticks its clock in the background."""

    def __init__(
        self,
        model: SimulatedCognito,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tick_interval: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self.ssl_context = ssl_context
        self._httpd: _SimulatorHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running")
        host, port = self._httpd.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{shown}:{port}"

    def start(self) -> str:
        if self._httpd is not None:
            return self.url
        self._stopping.clear()
        self._httpd = _SimulatorHTTPServer((self.host, self.port), self.model)
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        serve = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._threads = [serve]
        if self.tick_interval is not None:
            self._threads.append(threading.Thread(target=self._tick, daemon=True))
        for thread in self._threads:
            thread.start()
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []

    def _tick(self) -> None:
        interval = self.tick_interval or 1.0
        while not self._stopping.wait(interval):
            self.model.advance()

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
