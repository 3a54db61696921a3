"""A model of Cognito's user pools and their import jobs, for the demo, the tests and the
benchmark: pools, jobs in creation order, the jobs' lifecycle on an injected clock, and the
read queries the service answers. No HTTP here (`exporter.demo.wire` speaks the protocol),
so it can be driven and checked directly.

Jobs added with `add_job` are history and stay exactly as given unless `live=True`; jobs
arriving through `Lifecycle.new_job_every` are live and follow the lifecycle. Everything drawn
at random comes from the seed.
"""

from __future__ import annotations

import bisect
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exporter.demo.lifecycle import (
    CHANGEABLE_FIELDS,
    JOB_STATUSES,
    TERMINAL_STATUSES,
    JsonObject,
    Lifecycle,
    SimulatedJob,
    advance_job,
    checked_change,
    draw_job,
    job_view,
    presigned_url,
    rebase_progress,
    region_of,
)

DEFAULT_ACCOUNT_ID = "123456789012"
POOL_ID_MAX_LENGTH = 55
POOL_ID_PATTERN = re.compile(r"[\w-]+_[0-9a-zA-Z]+", re.ASCII)
JOB_NAME_UNSAFE = re.compile(r"[^\w\s+=,.@-]")

JobKey = tuple[float, int]


@dataclass(frozen=True)
class PoolCounts:
    """Jobs per status (zeros left out) and users summed over a pool's jobs: the truth a
    collection of the pool must report."""

    statuses: dict[str, int]
    users: dict[str, int]


class ServiceError(Exception):
    """An error the service answers with: its `__type` code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class SimulatedPool:
    pool_id: str
    name: str
    tags: dict[str, str]
    created: float
    modified: float
    spawning: bool
    arrivals: random.Random
    jobs: dict[str, SimulatedJob] = field(default_factory=dict)
    order: list[tuple[float, int, str]] = field(default_factory=list)
    next_arrival: float | None = None
    spawned: int = 0
    replica_regions: tuple[str, ...] = ()


class CognitoModel:
    """Pools and their import jobs, moved along on the injected clock by every query and by
    `advance()`."""

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
        self._lock = threading.Lock()
        self._pools: dict[str, SimulatedPool] = {}
        self._active: dict[int, SimulatedJob] = {}
        self._next_seq = 0

    # ----- pools and jobs, for the demo and the tests -----

    def add_pool(
        self,
        pool_id: str,
        name: str,
        tags: Mapping[str, str] | None = None,
        *,
        created: float | None = None,
        spawning: bool = True,
        replica_regions: tuple[str, ...] = (),
    ) -> None:
        if not POOL_ID_PATTERN.fullmatch(pool_id) or len(pool_id) > POOL_ID_MAX_LENGTH:
            raise ValueError(f"not a user pool id: {pool_id!r}")
        with self._lock:
            if pool_id in self._pools:
                raise ValueError(f"user pool {pool_id} already exists")
            when = self.clock() if created is None else created
            self._pools[pool_id] = SimulatedPool(
                pool_id=pool_id,
                name=name,
                tags=dict(tags or {}),
                created=when,
                modified=when,
                spawning=spawning,
                arrivals=random.Random(f"{self.seed}/{pool_id}/arrivals"),  # noqa: S311
                replica_regions=replica_regions,
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

    def delete_pool(self, pool_id: str) -> None:
        """The pool is gone: no longer listed, it answers ResourceNotFound."""
        with self._lock:
            for job in self._pools.pop(self._pool(pool_id).pool_id).jobs.values():
                self._active.pop(job.seq, None)

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

        `total_users=0` draws a total from the lifecycle; it only matters once the job is live.
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
            rebase_progress(job, self.clock())
            self._insert_job(pool, job)
            return job.job_id

    def set_job(self, pool_id: str, job_id: str, **changes: object) -> None:
        """Change a job anywhere in a pool's history, as of now.

        Takes the `add_job` keywords plus `live`. Moving a job to a finished status without
        `completed` stamps it now; a live job's progress carries on from the new counts.
        """
        unknown = set(changes) - CHANGEABLE_FIELDS
        if unknown:
            raise TypeError(f"set_job got unknown fields: {sorted(unknown)}")
        with self._lock:
            now = self.clock()
            self._advance_locked(now)
            pool = self._pool(pool_id)
            self._apply_changes(pool, self._job(pool, job_id), changes, now)

    def jobs(self, pool_id: str) -> list[JsonObject]:
        """The pool's jobs newest first, as of the last query (what the last answer saw)."""
        with self._lock:
            pool = self._pool(pool_id)
            return [job_view(pool.jobs[job_id]) for _, _, job_id in reversed(pool.order)]

    def advance(self) -> None:
        with self._lock:
            self._advance_locked(self.clock())

    def counts(self, pool_id: str) -> PoolCounts:
        """What the pool holds as of the last query, to check a collection against."""
        with self._lock:
            jobs = self._pool(pool_id).jobs.values()
            statuses = Counter(job.status for job in jobs)
            users = {
                "imported": sum(job.imported for job in jobs),
                "skipped": sum(job.skipped for job in jobs),
                "failed": sum(job.failed for job in jobs),
            }
            return PoolCounts(dict(statuses), users)

    # ----- what the service answers -----

    def jobs_older_than(
        self, pool_id: str, limit: int, cursor: JobKey | None
    ) -> tuple[list[JsonObject], JobKey | None, bool]:
        """Up to `limit` jobs newest first, older than `cursor` (all of them without it); the
        cursor of the page after (the oldest job's); and whether older jobs are left."""
        with self._lock:
            self._advance_locked(self.clock())
            pool = self._pool(pool_id)
            end = len(pool.order) if cursor is None else _bisect_left(pool.order, cursor)
            start = max(0, end - limit)
            page = [job_view(pool.jobs[job_id]) for _, _, job_id in reversed(pool.order[start:end])]
            last = pool.order[start][:2] if start < end else cursor
            return page, last, start > 0

    def describe_job(self, pool_id: str, job_id: str) -> JsonObject:
        with self._lock:
            self._advance_locked(self.clock())
            return job_view(self._job(self._pool(pool_id), job_id))

    def pools_from(self, start: int, limit: int) -> tuple[list[JsonObject], int]:
        """Up to `limit` pool summaries in creation order from position `start`, and how many
        pools there are."""
        with self._lock:
            pools = list(self._pools.values())
            if not 0 <= start <= len(pools):
                raise IndexError(start)
            chosen = pools[start : start + limit]
            return [
                {"Id": pool.pool_id, "Name": pool.name, "CreationDate": pool.created}
                | {"LastModifiedDate": pool.modified, "Status": "Enabled"}
                | ({"ReplicaRegions": list(pool.replica_regions)} if pool.replica_regions else {})
                for pool in chosen
            ], len(pools)

    def describe_pool(self, pool_id: str) -> JsonObject:
        with self._lock:
            pool = self._pool(pool_id)
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

    # ----- lookups (lock held) -----

    def _pool(self, pool_id: str) -> SimulatedPool:
        pool = self._pools.get(pool_id)
        if pool is None:
            raise ServiceError("ResourceNotFoundException", f"User pool {pool_id} does not exist.")
        return pool

    def _job(self, pool: SimulatedPool, job_id: str) -> SimulatedJob:
        job = pool.jobs.get(job_id)
        if job is None:
            raise ServiceError(
                "ResourceNotFoundException",
                f"Import job {job_id} does not exist in user pool {pool.pool_id}.",
            )
        return job

    # ----- jobs arriving and moving (lock held) -----

    def _new_job(
        self, pool: SimulatedPool, *, name: str, created: float, role_arn: str | None
    ) -> SimulatedJob:
        seq = self._next_seq
        self._next_seq += 1
        draw = draw_job(self.seed, pool.pool_id, seq, pool.jobs, self.lifecycle)
        region = region_of(pool.pool_id)
        return SimulatedJob(
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

    def _insert_job(self, pool: SimulatedPool, job: SimulatedJob) -> None:
        pool.jobs[job.job_id] = job
        entry = (job.created, job.seq, job.job_id)
        pool.order.insert(_bisect_left(pool.order, entry[:2]), entry)
        self._track(job)

    def _track(self, job: SimulatedJob) -> None:
        if job.live and job.status not in TERMINAL_STATUSES:
            self._active[job.seq] = job
        else:
            self._active.pop(job.seq, None)

    def _advance_locked(self, now: float) -> None:
        self._spawn_arrivals(now)
        for job in list(self._active.values()):
            advance_job(job, now, self.lifecycle)
            self._track(job)

    def _spawn_arrivals(self, now: float) -> None:
        every = self.lifecycle.new_job_every
        if every is None or every <= 0:
            return
        jitter = self.lifecycle.arrival_jitter
        for pool in self._pools.values():
            if not pool.spawning:
                pool.next_arrival = None
                continue
            if pool.next_arrival is None:
                pool.next_arrival = now + every * (1.0 + jitter * pool.arrivals.uniform(-1.0, 1.0))
            while pool.next_arrival <= now:
                self._spawn(pool, pool.next_arrival)
                pool.next_arrival += every * (1.0 + jitter * pool.arrivals.uniform(-1.0, 1.0))

    def _spawn(self, pool: SimulatedPool, at: float) -> None:
        """A job as the simulated operator makes them: created, then started soon (or not)."""
        pool.spawned += 1
        name = f"{JOB_NAME_UNSAFE.sub('-', pool.name)}-import-{pool.spawned:04d}"
        job = self._new_job(pool, name=name, created=at, role_arn=None)
        job.start_at = None if job.operator_delay is None else at + job.operator_delay
        self._insert_job(pool, job)

    def _apply_changes(
        self, pool: SimulatedPool, job: SimulatedJob, changes: Mapping[str, object], now: float
    ) -> None:
        old_key, old_status = job.key, job.status
        for name, value in changes.items():
            setattr(job, name, checked_change(name, value))
        if job.key != old_key:
            pool.order.pop(_bisect_left(pool.order, old_key))
            pool.order.insert(_bisect_left(pool.order, job.key), (*job.key, job.job_id))
        finishing = job.status in TERMINAL_STATUSES and old_status not in TERMINAL_STATUSES
        if finishing and "completed" not in changes and job.completed is None:
            job.completed = now
        job.total_users = max(job.total_users, job.processed)
        if job.status == "Stopping" and old_status != "Stopping":
            job.stop_requested_at = now
        if job.status in {"Pending", "InProgress"} and job.started is None:
            job.started = now
        if job.status == "InProgress":
            rebase_progress(job, now)
        self._track(job)


def _bisect_left(order: list[tuple[float, int, str]], key: JobKey) -> int:
    return bisect.bisect_left(order, key, key=lambda entry: entry[:2])
