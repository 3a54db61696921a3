"""Reading finished jobs' logs in the background, never on a scrape's path.

A few threads for the process (`ReadLimits.readers`) read the jobs the pools ask for, through a
request budget of its own per account and Region (`ReadLimits.requests_per_second`, well under
the 5 a second FilterLogEvents allows an account and Region, which its other users share). A job
is read in turns of a few pages; a job not done by then goes behind the others of its account
and Region, so one very large log cannot hold up the rest. Turns go round the accounts and
Regions, one turn of each at a time: a slow or endless logs endpoint holds up its own account
and Region's jobs, and the others' by one turn at most. Each job is bounded in pages and in
reading time; a job that reaches a bound keeps what was read, marked incomplete. Throttling
slows the budget down; other failures are tried again later, a few times; a refusal
(AccessDenied) turns reading off for the pool until the next reload, with one log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from exporter.cognito.clients import ClientFactory, ClientKey
from exporter.cognito.errors import error_code
from exporter.cognito.jobs import DENIED_CODES, Job
from exporter.cognito.logs import (
    InvalidLogPage,
    fetch_log_page,
    job_request,
    job_stream,
    log_group,
)
from exporter.cognito.pools import pool_name
from exporter.collect.attempts import (
    THROTTLING_CODES,
    AccountRegion,
    CallScope,
    calling_for,
    failure_counted_by_attempt,
)
from exporter.collect.fair_turns import FairTurns
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import BucketRegistry, DeadlineExceeded
from exporter.collect.reasons import ReasonTally
from exporter.collect.reasons_pool import JobReasons, PoolReasons
from exporter.config.model import Pool
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

T = TypeVar("T")
# answers that asking again cannot change: a log group that does not exist, a request the
# service (or botocore, before sending it) finds invalid
NEVER_SUCCEEDING_CODES = frozenset({"InvalidParameter", "ResourceNotFound", "ParamValidation"})


class _NoSlot(Exception):
    """The budget had no request slot within a turn: the job takes a turn of its own later."""


class _NoLongerWanted(Exception):
    """Reading was turned off, refused or dropped for the pool since the job was offered."""


@dataclass(frozen=True)
class ReadLimits:
    requests_per_second: float = 1.0
    pages_per_job: int = 1_000
    seconds_per_job: float = 1_800.0
    pages_per_turn: int = 30
    seconds_per_turn: float = 30.0
    call_seconds: float = 10.0
    tries: int = 5
    retry_seconds: float = 30.0
    throttled_seconds: float = 5.0
    max_waiting_jobs: int = 10_000
    # threads reading at once, each for another account and Region
    readers: int = 4
    # a log read this soon after its job finished that lacks rows is read again once, a
    # retry_seconds later
    settle_seconds: float = 300.0


@dataclass(frozen=True)
class PoolToRead:
    """A pool whose jobs' logs are to be read, with what reading them needs: the pool as
    configured, the clients and configuration generation in force when they were offered,
    its budget and error label."""

    pool: Pool
    reasons: PoolReasons
    clients: ClientFactory
    generation: object
    account: AccountRegion
    label: str


@dataclass(eq=False)
class _Read:
    request: PoolToRead
    job: Job
    tally: ReasonTally = field(init=False)
    token: str | None = None
    pages: int = 0
    seconds: float = 0.0
    failures: int = 0
    read_again: bool = False
    # the last call's scope: whether the gate counted its failure
    scope: CallScope | None = None

    def __post_init__(self) -> None:
        self.tally = tally_for(self.job)


class ReasonsReader:
    def __init__(
        self,
        limits: ReadLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: ExporterMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits or ReadLimits()
        self._clock = clock
        self._wall_clock = wall_clock
        self._metrics = metrics
        self._buckets = BucketRegistry(self.limits.requests_per_second, clock)
        self._wake = threading.Condition()
        self._turns: FairTurns[AccountRegion, _Read] = FairTurns()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    def offer(self, pool: PoolToRead, jobs: Iterable[Job]) -> None:
        """Read those of `jobs` the pool wants read, when their turn comes; past
        `max_waiting_jobs` a job is left for a later collection to offer again."""
        wanted = pool.reasons.wanted(jobs, pool.generation)
        with self._wake:
            for job in wanted:
                if self._stopping or len(self._turns) >= self.limits.max_waiting_jobs:
                    pool.reasons.forget_waiting(job.job_id)
                    continue
                self._turns.put(pool.account, _Read(pool, job))
            while len(self._threads) < self.limits.readers and not self._stopping:
                thread = threading.Thread(target=self._run, name="reasons", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._wake.notify_all()

    def waiting(self) -> int:
        with self._wake:
            return len(self._turns)

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no job is being read or waiting (for tests and the benchmark)."""
        with self._wake:
            return self._wake.wait_for(
                lambda: not self._turns.taking and not self._turns, timeout=timeout
            )

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._turns.clear()
            self._wake.notify_all()

    def _run(self) -> None:
        while True:
            read = self._next()
            if read is None:
                return
            try:
                self._turn(read)
            except Exception as error:  # one job's surprise must not end the reading
                log.warning(
                    "reading an import job's log failed",
                    extra={"fields": _fields(read, error)},
                )
                self._finish(read)
            finally:
                with self._wake:
                    self._turns.release(read.request.account)
                    self._wake.notify_all()

    def _next(self) -> _Read | None:
        with self._wake:
            while not self._stopping:
                now = self._clock()
                taken = self._turns.take(now)
                if taken is not None:
                    return taken[1]
                due = self._turns.next_due()
                self._wake.wait(None if due is None else max(0.0, due - now))
            return None

    def _again(self, read: _Read, after: float = 0.0) -> None:
        with self._wake:
            if self._stopping:
                return
            at = None if after <= 0 else self._clock() + after
            self._turns.put(read.request.account, read, at)

    def _turn(self, read: _Read) -> None:
        limits = self.limits
        started = self._clock()
        try:
            done = self._read_pages(read, started)
        except _NoLongerWanted:
            return
        except _NoSlot:
            self._again(read)
            return
        except Exception as error:
            self._failed(read, error)
            return
        finally:
            read.seconds += self._clock() - started
        if done and self._may_be_unsettled(read):
            read.read_again, read.tally, read.token = True, tally_for(read.job), None
            self._again(read, limits.retry_seconds)
        elif done or read.pages >= limits.pages_per_job or read.seconds >= limits.seconds_per_job:
            self._finish(read)
        else:
            self._again(read)

    def _may_be_unsettled(self, read: _Read) -> bool:
        """Rows missing from a log read just after its job finished may not be written yet."""
        job = read.job
        if read.read_again or read.tally.users >= job.skipped + job.failed:
            return False
        finished_ago = self._wall_clock() - (job.completed or job.created or 0.0)
        return finished_ago < self.limits.settle_seconds

    def _read_pages(self, read: _Read, started: float) -> bool:
        """Pages of the job's log for one turn; True when nothing of it is left to read."""
        request, limits = read.request, self.limits
        pool, job = request.pool, read.job
        name = request.reasons.pool_name
        if name is None:
            client = request.clients.client(ClientKey.of(pool))
            name = self._call(read, lambda: pool_name(client, pool.id))
            request.reasons.name_read(name)
        logs = request.clients.logs_client(
            ClientKey(pool.credentials, pool.region, pool.logs_endpoint_url)
        )
        asked, stream = job_request(log_group(pool.id, name), job), job_stream(job)
        expected = job.skipped + job.failed
        for _ in range(limits.pages_per_turn):
            page = self._call(read, lambda: fetch_log_page(logs, asked, read.token, stream))
            if page.next_token is not None and page.next_token == read.token:
                raise InvalidLogPage("FilterLogEvents gave the same token again")
            read.pages += 1
            read.tally.add(page.messages)
            read.token = page.next_token
            if read.token is None or read.tally.users >= expected:
                return True
            if read.pages >= limits.pages_per_job:
                return False
            if self._clock() - started >= limits.seconds_per_turn:
                return False
        return False

    def _call(self, read: _Read, call: Callable[[], T]) -> T:
        request, limits = read.request, self.limits
        try:
            self._buckets.bucket(request.account).acquire(self._clock() + limits.seconds_per_turn)
        except DeadlineExceeded:
            raise _NoSlot from None
        # asked after the wait for a slot, which a reload may have come during
        if not request.reasons.still_wanted(read.job.job_id, request.generation):
            raise _NoLongerWanted
        scope = CallScope(request.pool.id, None, self._clock() + limits.call_seconds, request.label)
        read.scope = scope
        with calling_for(scope):
            return call()

    def _failed(self, read: _Read, error: Exception) -> None:
        request, limits = read.request, self.limits
        code = error_code(error)
        counted = read.scope is not None and failure_counted_by_attempt(read.scope)
        if self._metrics is not None and not counted:
            self._metrics.api_errors.labels(user_pool_id=request.label, error_code=code).inc()
        if code in DENIED_CODES:
            if request.reasons.deny(request.generation):
                log.warning(
                    "reading import job logs is not allowed; reasons are off for the pool "
                    "until the configuration is reloaded (allow logs:FilterLogEvents, and "
                    "cognito-idp:DescribeUserPool for the log group's name)",
                    extra={"fields": _fields(read, error)},
                )
            return
        if code in THROTTLING_CODES:
            self._buckets.bucket(request.account).back_off(limits.throttled_seconds)
            self._again(read, limits.throttled_seconds)
            return
        read.failures += 1
        if code in NEVER_SUCCEEDING_CODES or read.failures >= limits.tries:
            log.info(
                "an import job's log could not be read; its reasons stay incomplete",
                extra={"fields": _fields(read, error)},
            )
            self._finish(read, f"{code}: {safe_error_text(error)}")
            return
        self._again(read, limits.retry_seconds * read.failures)

    def _finish(self, read: _Read, problem: str | None = None) -> None:
        job, tally = read.job, read.tally
        read.request.reasons.record(
            JobReasons(
                job.job_id,
                dict(tally.counts),
                tuple(tally.examples),
                complete=tally.users >= job.skipped + job.failed,
                problem=problem,
            )
        )


def tally_for(job: Job) -> ReasonTally:
    """A tally of `job`'s rows, which counts no more users of an outcome than the job did."""
    return ReasonTally({"skipped": job.skipped, "failed": job.failed})


def _fields(read: _Read, error: BaseException) -> dict[str, object]:
    return {
        "user_pool_id": read.request.pool.id,
        "job_id": read.job.job_id,
        "error_code": error_code(error),
        "error": safe_error_text(error),
    }
