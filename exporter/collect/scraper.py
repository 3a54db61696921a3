"""Collecting every pool at once, within the scrape's deadline, shared by concurrent scrapes.

Pools are collected in parallel on a bounded thread pool. A scrape joins a collection that
was under way when it arrived, or that finished after it arrived, instead of starting another
(HA Prometheus pairs, a dashboard beside Prometheus, scrapes that queued for a worker); with
`cache_ttl` a recent finished collection is served as it is. Whatever is not done by the
deadline is reported as a failed pool (`Timeout`) and the rest goes out on time. One pool's
failure never touches another's numbers.

The scraper lives as long as the process: a reload gives it new settings, clients and pools
(`configure`) and never cancels a collection in flight; what it knows of each pool (history,
last result) carries over.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field, replace

from exporter.cognito.clients import ClientFactory, ClientKey, error_code
from exporter.cognito.jobs import Job, PoolJobs
from exporter.collect.attempts import CallScope, calling_for, failure_counted_by_attempt
from exporter.collect.history import PoolHistory, ScanOutcome, StatusChange, recent_jobs
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import DeadlineExceeded
from exporter.collect.reading import jobs_per_page, page_bound
from exporter.config.model import Pool
from exporter.config.schema import Scrape
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

MAX_PROBED_POOLS = 1000
TIMEOUT = DeadlineExceeded.error_code
NOT_COLLECTED = "not collected before the scrape deadline"
# errors of pools probed without being listed share one label value, so probing cannot grow
# the exporter's own series without bound
UNLISTED_POOL_LABEL = ""


@dataclass(frozen=True)
class PoolResult:
    pool: Pool
    success: bool
    duration: float
    error_code: str | None = None
    error_message: str | None = None
    outcome: ScanOutcome | None = None
    recent_jobs: tuple[Job, ...] = ()

    @classmethod
    def timed_out(cls, pool: Pool, duration: float) -> PoolResult:
        return cls(pool, False, duration, error_code=TIMEOUT, error_message=NOT_COLLECTED)


@dataclass(frozen=True)
class Snapshot:
    results: tuple[PoolResult, ...]
    complete: bool
    cached: bool = False


def account_key(pool: Pool) -> Hashable:
    """Quotas are per account and region; a credential set stands for one account."""
    return (pool.credentials, pool.region, pool.endpoint_url)


class PoolState:
    """What is kept of one pool between scrapes and across reloads."""

    def __init__(self, pool_id: str, scrape: Scrape) -> None:
        self.history = PoolHistory(pool_id, scrape.max_jobs_per_pool, scrape.full_resync_interval)
        self.logged_error: str | None = None
        self.logged = False
        self.timed_out_last = False


@dataclass
class _Collection:
    started: float
    deadline: float
    futures: dict[str, Future[PoolResult]]
    timeouts_counted: set[str] = field(default_factory=set)
    finished_at: float | None = None

    def done(self) -> bool:
        return all(future.done() for future in self.futures.values())


@dataclass(frozen=True)
class _Settings:
    scrape: Scrape
    clients: ClientFactory
    executor: ThreadPoolExecutor


class Scraper:
    def __init__(
        self,
        pools: Sequence[Pool],
        scrape: Scrape,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._settings = _Settings(scrape, clients, self._new_executor(scrape))
        self._pools: tuple[Pool, ...] = ()
        self._states: dict[str, PoolState] = {}
        self._probed: OrderedDict[str, PoolState] = OrderedDict()
        self._latest: _Collection | None = None
        self._last: Snapshot | None = None
        self._wait_for_pools: Callable[[float], bool] | None = None
        self.set_pools(pools)

    @property
    def pools(self) -> tuple[Pool, ...]:
        return self._pools

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The most recent collection's results, for pages that must not call AWS."""
        return self._last

    def configure(self, scrape: Scrape, clients: ClientFactory, pools: Sequence[Pool]) -> None:
        """New settings, clients and pools, in force for collections started from now on.
        Collections in flight finish with what they started with; a thread pool of another
        size replaces the old one, which runs out what it was given."""
        with self._lock:
            previous = self._settings
            executor = previous.executor
            if scrape.max_concurrency != previous.scrape.max_concurrency:
                executor = self._new_executor(scrape)
                previous.executor.shutdown(wait=False, cancel_futures=False)
            self._settings = _Settings(scrape, clients, executor)
        self.set_pools(pools)

    def set_pools(self, pools: Sequence[Pool]) -> None:
        with self._lock:
            scrape = self._settings.scrape
            self._states = {
                pool.id: self._states.get(pool.id) or PoolState(pool.id, scrape) for pool in pools
            }
            self._pools = tuple(pools)

    def wait_for_pools_with(self, wait: Callable[[float], bool] | None) -> None:
        """`wait(seconds)` says whether the pool list is complete yet (discovery's first
        round), waiting up to that long; the first scrapes collect the pools already known
        and add the others once the wait returns."""
        self._wait_for_pools = wait

    def collect(self, deadline: float, arrived: float | None = None) -> Snapshot:
        """Every pool, by `deadline`, for a scrape that arrived at `arrived` (now if None)."""
        now = self._clock()
        arrived = now if arrived is None else arrived
        with self._lock:
            collection, cached = self._usable_collection(now, arrived)
            if collection is None:
                collection = self._start(now, deadline)
        if cached:
            return replace(self._snapshot_of(collection, complete_only=True), cached=True)
        wait = self._wait_for_pools
        if wait is not None and wait(deadline - self._clock()):
            with self._lock:
                self._add_missing(collection)
        wait_for_futures(
            list(collection.futures.values()), timeout=max(0.0, deadline - self._clock())
        )
        snapshot = self._snapshot_of(collection)
        with self._lock:
            self._last = snapshot
        log.debug(
            "scrape answered",
            extra={
                "fields": {
                    "pools": len(snapshot.results),
                    "failed": sum(1 for result in snapshot.results if not result.success),
                    "seconds": round(self._clock() - now, 3),
                }
            },
        )
        return snapshot

    def collect_one(self, pool: Pool, deadline: float, listed: bool = True) -> PoolResult:
        """One pool alone, for /probe; not shared with other scrapes."""
        state = self._state(pool, listed)
        label = pool.id if listed else UNLISTED_POOL_LABEL
        future = self._settings.executor.submit(self._collect_pool, pool, state, label, deadline)
        try:
            result = future.result(timeout=max(0.0, deadline - self._clock()))
        except FutureTimeout:
            self._count_timeout(label)
            return PoolResult.timed_out(pool, max(0.0, deadline - self._clock()))
        if result.error_code == TIMEOUT:
            self._count_timeout(label)
        return result

    def close(self, wait: bool = False) -> None:
        """At exit: what is still queued is not needed; `wait` for what runs."""
        self._settings.executor.shutdown(wait=wait, cancel_futures=True)

    def _new_executor(self, scrape: Scrape) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=scrape.max_concurrency, thread_name_prefix="collect")

    def _usable_collection(self, now: float, arrived: float) -> tuple[_Collection | None, bool]:
        """The latest collection when this scrape may use it, and whether only as a cache."""
        latest = self._latest
        if latest is None or set(latest.futures) != {pool.id for pool in self._pools}:
            return None, False
        scrape = self._settings.scrape
        if not latest.done():
            return (latest, False) if now - latest.started <= scrape.timeout else (None, False)
        if latest.finished_at is not None and latest.finished_at >= arrived:
            return latest, False
        if scrape.cache_ttl > 0 and now - latest.started < scrape.cache_ttl:
            return latest, True
        return None, False

    def _start(self, now: float, deadline: float) -> _Collection:
        collection = _Collection(started=now, deadline=deadline, futures={})
        self._latest = collection
        # pools that ran out of time last time go last, so they cannot keep the others waiting
        ordered = sorted(self._pools, key=lambda pool: self._states[pool.id].timed_out_last)
        self._submit(collection, ordered)
        return collection

    def _add_missing(self, collection: _Collection) -> None:
        missing = [pool for pool in self._pools if pool.id not in collection.futures]
        if collection is self._latest and missing:
            collection.finished_at = None
            self._submit(collection, missing)

    def _submit(self, collection: _Collection, pools: Sequence[Pool]) -> None:
        executor = self._settings.executor
        for pool in pools:
            future = executor.submit(
                self._collect_pool, pool, self._states[pool.id], pool.id, collection.deadline
            )
            collection.futures[pool.id] = future
            future.add_done_callback(functools.partial(self._finished, collection))

    def _finished(self, collection: _Collection, _: Future[PoolResult]) -> None:
        if collection.done() and collection.finished_at is None:
            collection.finished_at = self._clock()

    def _snapshot_of(self, collection: _Collection, complete_only: bool = False) -> Snapshot:
        results = []
        complete = True
        for pool in self._pools:
            future = collection.futures.get(pool.id)
            if future is not None and future.done() and not future.cancelled():
                result = future.result()
                if result.error_code == TIMEOUT:
                    self._count_timeout_once(collection, pool)
                results.append(result)
                continue
            complete = False
            if not complete_only:
                self._count_timeout_once(collection, pool)
                result = PoolResult.timed_out(pool, self._clock() - collection.started)
                self._log_result_change(self._states[pool.id], result)
                results.append(result)
        return Snapshot(tuple(results), complete=complete)

    def _count_timeout_once(self, collection: _Collection, pool: Pool) -> None:
        """A pool reported as timed out counts once per collection, however many scrapes
        shared that collection and whether the worker or the waiter saw the deadline first."""
        with self._lock:
            first_report = pool.id not in collection.timeouts_counted
            collection.timeouts_counted.add(pool.id)
        if first_report:
            self._count_timeout(pool.id)

    def _count_timeout(self, label: str) -> None:
        self._metrics.api_errors.labels(user_pool_id=label, error_code=TIMEOUT).inc()

    def _state(self, pool: Pool, listed: bool) -> PoolState:
        state = self._states.get(pool.id) if listed else None
        if state is not None:
            return state
        with self._lock:
            state = self._probed.pop(pool.id, None) or PoolState(pool.id, self._settings.scrape)
            self._probed[pool.id] = state
            while len(self._probed) > MAX_PROBED_POOLS:
                self._probed.popitem(last=False)
            return state

    def _collect_pool(
        self, pool: Pool, state: PoolState, label: str, deadline: float
    ) -> PoolResult:
        started = self._clock()
        scrape = self._settings.scrape
        scope = CallScope(pool.id, account_key(pool), deadline, label)
        try:
            outcome = self._scan(pool, state.history, scope)
        except Exception as error:  # any failure is this pool's alone
            code = error_code(error)
            # timeouts are counted where the scrape reports them, once per pool and collection
            if code != TIMEOUT and not failure_counted_by_attempt(scope):
                self._metrics.api_errors.labels(user_pool_id=label, error_code=code).inc()
            result = PoolResult(
                pool=pool,
                success=False,
                duration=self._clock() - started,
                error_code=code,
                error_message=safe_error_text(error),
            )
        else:
            result = PoolResult(
                pool=pool,
                success=True,
                duration=self._clock() - started,
                outcome=outcome,
                recent_jobs=tuple(
                    recent_jobs(
                        outcome.jobs,
                        self._wall_clock(),
                        scrape.job_window,
                        scrape.max_jobs_per_pool,
                    )
                ),
            )
            _log_changes(pool, outcome.changes)
            if outcome.ordering_broken:
                log.warning(
                    "import jobs are not listed newest first; reading the pool in full",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
        state.timed_out_last = result.error_code == TIMEOUT
        self._log_result_change(state, result)
        return result

    def _scan(self, pool: Pool, history: PoolHistory, scope: CallScope) -> ScanOutcome:
        remaining = scope.deadline - self._clock()
        if remaining <= 0 or not history.lock.acquire(timeout=remaining):
            raise DeadlineExceeded("the pool was still busy from an earlier scrape")
        try:
            scrape = self._settings.scrape
            history.configure(scrape.max_jobs_per_pool, scrape.full_resync_interval)
            client = self._settings.clients.client(
                ClientKey(pool.credentials, pool.region, pool.endpoint_url)
            )
            reader = PoolJobs(client, pool.id, pool.page_size)
            with calling_for(scope):
                return history.scan(
                    reader,
                    page_bound(pool.max_jobs, pool.page_size),
                    jobs_per_page(pool.page_size),
                    self._wall_clock(),
                )
        finally:
            history.lock.release()

    def _log_result_change(self, state: PoolState, result: PoolResult) -> None:
        with self._lock:
            previous, first = state.logged_error, not state.logged
            state.logged_error, state.logged = result.error_code, True
        if result.error_code == previous and not first:
            return
        fields = {"user_pool_id": result.pool.id}
        if result.error_code is not None:
            fields |= {"error_code": result.error_code, "error": result.error_message or ""}
            log.warning("collecting the pool failed", extra={"fields": fields})
        elif not first:
            log.info("collecting the pool works again", extra={"fields": fields})


def _log_changes(pool: Pool, changes: Sequence[StatusChange]) -> None:
    for change in changes:
        job = change.job
        worrying = job.status == "Failed" or (job.terminal and job.failed > 0)
        level = logging.WARNING if worrying else logging.INFO
        log.log(
            level,
            "import job status changed",
            extra={
                "fields": {
                    "event": "job_status_changed",
                    "user_pool_id": pool.id,
                    "job_id": job.job_id,
                    "job_name": job.name,
                    "old_status": change.old_status or "",
                    "new_status": job.status,
                    "imported": job.imported,
                    "skipped": job.skipped,
                    "failed": job.failed,
                    "completion_message": job.completion_message or "",
                }
            },
        )
