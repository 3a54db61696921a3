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

from exporter.cognito.clients import ClientFactory
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.pool import (
    TIMEOUT,
    UNLISTED_POOL_LABEL,
    PoolCollector,
    PoolResult,
    PoolState,
    log_result_change,
)
from exporter.collect.storage import HistoryStore
from exporter.config.model import Pool
from exporter.config.schema import Scrape

log = logging.getLogger(__name__)

MAX_PROBED_POOLS = 1000


@dataclass(frozen=True)
class Snapshot:
    results: tuple[PoolResult, ...]
    complete: bool
    cached: bool = False


# a joining scrape collects again what its collection ran out of time for if it has this long
MIN_EXTENSION_SECONDS = 1.0


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
    pools: PoolCollector
    executor: ThreadPoolExecutor


class Scraper:
    def __init__(
        self,
        pools: Sequence[Pool],
        scrape: Scrape,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        account_key: Callable[[Pool], Hashable] = lambda pool: (pool.credentials, pool.region),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_not_enabled: Callable[[Pool], bool] = lambda pool: False,
        store: HistoryStore | None = None,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        # what every pool collector gets, whatever the settings of a reload
        self._new_pool_collector = functools.partial(
            PoolCollector,
            metrics=metrics,
            account_key=account_key,
            clock=clock,
            wall_clock=wall_clock,
            on_not_enabled=on_not_enabled,
            store=store,
        )
        self._lock = threading.Lock()
        self._settings = _Settings(
            scrape, self._pool_collector(scrape, clients), self._new_executor(scrape)
        )
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
            self._settings = _Settings(scrape, self._pool_collector(scrape, clients), executor)
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
        if self._extend(collection, deadline):
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
        settings = self._settings
        future = settings.executor.submit(settings.pools.collect, pool, state, label, deadline)
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

    def _pool_collector(self, scrape: Scrape, clients: ClientFactory) -> PoolCollector:
        return self._new_pool_collector(scrape, clients)

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

    def _extend(self, collection: _Collection, deadline: float) -> bool:
        """A scrape with more time than the collection it joined: the pools that collection
        ran out of time for are collected again by this scrape's deadline (once), for it and
        any scrape that joins later."""
        with self._lock:
            now = self._clock()
            if collection.deadline > now or deadline - now < MIN_EXTENSION_SECONDS:
                return False
            timed_out = [
                pool
                for pool in self._pools
                if (future := collection.futures.get(pool.id)) is not None
                and future.done()
                and not future.cancelled()
                and future.result().error_code == TIMEOUT
            ]
            if not timed_out:
                return False
            collection.deadline = deadline
            collection.finished_at = None
            self._submit(collection, timed_out)
            return True

    def _add_missing(self, collection: _Collection) -> None:
        missing = [pool for pool in self._pools if pool.id not in collection.futures]
        if collection is self._latest and missing:
            collection.finished_at = None
            self._submit(collection, missing)

    def _submit(self, collection: _Collection, pools: Sequence[Pool]) -> None:
        settings = self._settings
        for pool in pools:
            future = settings.executor.submit(
                settings.pools.collect, pool, self._states[pool.id], pool.id, collection.deadline
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
                log_result_change(self._states[pool.id], result)
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
