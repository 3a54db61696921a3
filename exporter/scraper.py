"""Collecting every pool at once, within the scrape's deadline, shared by concurrent scrapes.

Pools are collected in parallel on a bounded thread pool. A scrape that arrives while a
collection is under way joins it instead of starting another (HA Prometheus pairs, a dashboard
beside Prometheus); with `cache_ttl` a recent finished collection is served as it is. Whatever
is not done by the deadline is reported as a failed pool (`Timeout`) and the rest goes out on
time. One pool's failure never touches another's numbers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field, replace

from exporter.attempts import CallScope, calling_for
from exporter.aws import ClientFactory, ClientKey, counted_by_attempts, error_code
from exporter.cognito import Job, Page, fetch_page
from exporter.config import Pool, Scrape
from exporter.history import PoolHistory, ScanOutcome, StatusChange, recent_jobs
from exporter.metrics import ExporterMetrics
from exporter.ratelimit import DeadlineExceeded

log = logging.getLogger("exporter.scraper")

MAX_PROBED_POOLS = 1000


@dataclass(frozen=True)
class PoolResult:
    pool: Pool
    success: bool
    duration: float
    error_code: str | None = None
    error_message: str | None = None
    outcome: ScanOutcome | None = None
    recent_jobs: tuple[Job, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    results: tuple[PoolResult, ...]
    collected_at: float
    complete: bool
    cached: bool = False


def account_key(pool: Pool) -> Hashable:
    """Quotas are per account and region; a credential set stands for one account."""
    return (pool.credentials, pool.region, pool.endpoint_url)


@dataclass
class _Collection:
    started: float
    deadline: float
    futures: dict[str, Future[PoolResult]]
    timeouts_counted: set[str] = field(default_factory=set)

    def done(self) -> bool:
        return all(future.done() for future in self.futures.values())


class Scraper:
    def __init__(
        self,
        pools: Sequence[Pool],
        scrape: Scrape,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        histories: dict[str, PoolHistory] | None = None,
    ) -> None:
        self._pools = tuple(pools)
        self._scrape = scrape
        self._clients = clients
        self._metrics = metrics
        self._clock = clock
        self._wall_clock = wall_clock
        self._executor = ThreadPoolExecutor(
            max_workers=scrape.max_concurrency, thread_name_prefix="collect"
        )
        previous = histories or {}
        self._histories = {
            pool.id: previous.get(pool.id)
            or PoolHistory(pool.id, scrape.max_jobs_per_pool, scrape.full_resync_interval)
            for pool in self._pools
        }
        self._lock = threading.Lock()
        self._in_flight: _Collection | None = None
        self._last_complete: Snapshot | None = None
        self._last: Snapshot | None = None
        self._last_errors: dict[str, str | None] = {}
        self._probe_histories: OrderedDict[str, PoolHistory] = OrderedDict()

    @property
    def pools(self) -> tuple[Pool, ...]:
        return self._pools

    def settings_match(self, scrape: Scrape, clients: ClientFactory | None) -> bool:
        return self._scrape == scrape and self._clients is clients

    @property
    def histories(self) -> dict[str, PoolHistory]:
        return self._histories

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The most recent collection's results, for pages that must not call AWS."""
        return self._last

    def collect(self, deadline: float) -> Snapshot:
        with self._lock:
            now = self._clock()
            cached = self._fresh_cached_snapshot(now)
            if cached is not None:
                return cached
            collection = self._in_flight
            if (
                collection is None
                or collection.done()
                or now - collection.started > self._scrape.timeout
            ):
                collection = self._start(now, deadline)
                self._in_flight = collection
        snapshot = self._wait(collection, deadline)
        with self._lock:
            self._last = snapshot
            if snapshot.complete:
                self._last_complete = snapshot
        return snapshot

    def collect_one(self, pool: Pool, deadline: float) -> PoolResult:
        """One pool alone, for /probe; not shared with other scrapes."""
        future = self._executor.submit(self._collect_pool, pool, deadline)
        try:
            result = future.result(timeout=max(0.0, deadline - self._clock()))
        except FutureTimeout:
            self._count_timeout(pool)
            return PoolResult(
                pool=pool,
                success=False,
                duration=max(0.0, deadline - self._clock()),
                error_code="Timeout",
                error_message="not collected before the scrape deadline",
            )
        if result.error_code == DeadlineExceeded.error_code:
            self._count_timeout(pool)
        return result

    def _history(self, pool: Pool) -> PoolHistory:
        history = self._histories.get(pool.id)
        if history is not None:
            return history
        with self._lock:
            history = self._probe_histories.pop(pool.id, None) or PoolHistory(
                pool.id, self._scrape.max_jobs_per_pool, self._scrape.full_resync_interval
            )
            self._probe_histories[pool.id] = history
            while len(self._probe_histories) > MAX_PROBED_POOLS:
                self._probe_histories.popitem(last=False)
            return history

    def close(self, wait: bool = False) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def _fresh_cached_snapshot(self, now: float) -> Snapshot | None:
        last = self._last_complete
        if self._scrape.cache_ttl <= 0 or last is None:
            return None
        if now - last.collected_at >= self._scrape.cache_ttl:
            return None
        return replace(last, cached=True)

    def _start(self, now: float, deadline: float) -> _Collection:
        futures = {
            pool.id: self._executor.submit(self._collect_pool, pool, deadline)
            for pool in self._pools
        }
        return _Collection(started=now, deadline=deadline, futures=futures)

    def _wait(self, collection: _Collection, deadline: float) -> Snapshot:
        remaining = max(0.0, deadline - self._clock())
        wait_for_futures(list(collection.futures.values()), timeout=remaining)
        results = []
        complete = True
        for pool in self._pools:
            future = collection.futures[pool.id]
            if future.done() and not future.cancelled():
                result = future.result()
                if result.error_code == DeadlineExceeded.error_code:
                    self._count_timeout_once(collection, pool)
                results.append(result)
                continue
            complete = False
            self._count_timeout_once(collection, pool)
            results.append(self._timed_out(collection, pool))
        return Snapshot(tuple(results), collected_at=collection.started, complete=complete)

    def _count_timeout_once(self, collection: _Collection, pool: Pool) -> None:
        """A pool reported as timed out counts once per collection, however many scrapes
        shared that collection and whether the worker or the waiter saw the deadline first."""
        with self._lock:
            first_report = pool.id not in collection.timeouts_counted
            collection.timeouts_counted.add(pool.id)
        if first_report:
            self._count_timeout(pool)

    def _count_timeout(self, pool: Pool) -> None:
        self._metrics.api_errors.labels(
            user_pool_id=pool.id, error_code=DeadlineExceeded.error_code
        ).inc()

    def _timed_out(self, collection: _Collection, pool: Pool) -> PoolResult:
        result = PoolResult(
            pool=pool,
            success=False,
            duration=self._clock() - collection.started,
            error_code="Timeout",
            error_message="not collected before the scrape deadline",
        )
        self._log_result_change(result)
        return result

    def _collect_pool(self, pool: Pool, deadline: float) -> PoolResult:
        started = self._clock()
        history = self._history(pool)
        try:
            outcome = self._scan(pool, history, deadline)
        except Exception as error:  # any failure is this pool's alone
            code = error_code(error)
            # timeouts are counted where the scrape reports them, once per pool and collection
            if not counted_by_attempts(error) and not isinstance(error, DeadlineExceeded):
                self._metrics.api_errors.labels(user_pool_id=pool.id, error_code=code).inc()
            result = PoolResult(
                pool=pool,
                success=False,
                duration=self._clock() - started,
                error_code=code,
                error_message=_safe_message(error),
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
                        self._scrape.job_window,
                        self._scrape.max_jobs_per_pool,
                    )
                ),
            )
            _log_changes(pool, outcome.changes)
            if outcome.ordering_broken:
                log.warning(
                    "import jobs are not listed newest first; reading the pool in full",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
        self._log_result_change(result)
        return result

    def _scan(self, pool: Pool, history: PoolHistory, deadline: float) -> ScanOutcome:
        remaining = deadline - self._clock()
        if remaining <= 0 or not history.lock.acquire(timeout=remaining):
            raise DeadlineExceeded("the pool was still busy from an earlier scrape")
        try:
            client = self._clients.client(
                ClientKey(pool.credentials, pool.region, pool.endpoint_url)
            )

            def fetch(token: str | None) -> Page:
                return fetch_page(client, pool.id, pool.page_size, token)

            with calling_for(CallScope(pool.id, account_key(pool), deadline)):
                return history.scan(fetch, pool.max_pages, self._wall_clock())
        finally:
            history.lock.release()

    def _log_result_change(self, result: PoolResult) -> None:
        pool_id = result.pool.id
        with self._lock:
            previous = self._last_errors.get(pool_id, None)
            first = pool_id not in self._last_errors
            self._last_errors[pool_id] = result.error_code
        if result.error_code == previous and not first:
            return
        fields = {"user_pool_id": pool_id}
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


_URL = re.compile(r"\w+://\S+")


def _safe_message(error: BaseException) -> str:
    """A short reason for logs and the status page. URLs are cut out: an answer's text could
    carry a pre-signed upload URL, and none of our messages needs one."""
    lines = str(error).splitlines()
    text = lines[0] if lines and lines[0] else type(error).__name__
    return _URL.sub("<url>", text)[:300]
