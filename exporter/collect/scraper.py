"""Collecting every pool at once, within the scrape's deadline, shared by concurrent scrapes.

Pools are collected in parallel on a bounded thread pool. A scrape joins a collection that
was under way when it arrived, or that finished after it arrived, instead of starting another
(HA Prometheus pairs, a dashboard beside Prometheus, scrapes that queued for a worker); with
`cache_ttl` a recent finished collection is served as it is. Whatever is not done by the
deadline is reported as a failed pool (`Timeout`) and the rest goes out on time. One pool's
failure never touches another's numbers.

The scraper lives as long as the process: a reload gives it new settings and pools
(`configure`) and never cancels a collection in flight. It holds the tracked pools (each owns
its history, file and logging: `exporter.collect.pool`), the collections' futures, deadlines
and cache; a pool no longer listed is dropped.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field, replace
from typing import Protocol

from exporter.collect.pool import TIMEOUT, PoolResult
from exporter.config.model import Pool
from exporter.config.schema import Scrape

log = logging.getLogger(__name__)

MAX_PROBED_POOLS = 1000
# a joining scrape collects again what its collection ran out of time for if it has this long
MIN_EXTENSION_SECONDS = 1.0


class Tracked(Protocol):
    """A pool as the scraper uses it (`exporter.collect.pool.TrackedPool`)."""

    @property
    def pool(self) -> Pool: ...

    @property
    def timed_out_last(self) -> bool: ...

    def follow(self, pool: Pool) -> None: ...

    def collect(self, deadline: float) -> PoolResult: ...

    def not_collected(self, duration: float) -> PoolResult: ...

    def count_timeout(self) -> None: ...

    def drop(self) -> None: ...


class Tracker(Protocol):
    """Makes tracked pools (`exporter.collect.pool.PoolTracker`)."""

    def track(self, pool: Pool, *, listed: bool = True) -> Tracked: ...


@dataclass(frozen=True)
class Snapshot:
    results: tuple[PoolResult, ...]
    complete: bool
    cached: bool = False


@dataclass
class _Collection:
    started: float
    deadline: float
    futures: dict[str, Future[PoolResult]]
    timeouts_counted: set[str] = field(default_factory=set)
    finished_at: float | None = None

    def done(self) -> bool:
        return all(future.done() for future in list(self.futures.values()))


class Scraper:
    def __init__(
        self,
        pools: Sequence[Pool],
        scrape: Scrape,
        tracker: Tracker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tracker = tracker
        self._clock = clock
        self._lock = threading.Lock()
        self._scrape = scrape
        self._executor = self._new_executor(scrape)
        # pool id -> tracked pool, in the order pools are listed
        self._tracked: dict[str, Tracked] = {}
        self._probed: OrderedDict[str, Tracked] = OrderedDict()
        self._latest: _Collection | None = None
        self._last: Snapshot | None = None
        self._wait_for_pools: Callable[[float], bool] | None = None
        self.set_pools(pools)

    @property
    def pools(self) -> tuple[Pool, ...]:
        return tuple(tracked.pool for tracked in self._listed())

    @property
    def last_snapshot(self) -> Snapshot | None:
        """The most recent collection's results, for pages that must not call AWS."""
        return self._last

    def configure(self, scrape: Scrape, pools: Sequence[Pool]) -> None:
        """New settings and pools, in force for collections started from now on.
        Collections in flight finish; a thread pool of another size replaces the old one,
        which runs out what it was given."""
        with self._lock:
            if scrape.max_concurrency != self._scrape.max_concurrency:
                self._executor.shutdown(wait=False, cancel_futures=False)
                self._executor = self._new_executor(scrape)
            self._scrape = scrape
        self.set_pools(pools)

    def set_pools(self, pools: Sequence[Pool]) -> None:
        """The pools to collect from now on; those no longer among them are dropped."""
        with self._lock:
            previous = self._tracked
            tracked: dict[str, Tracked] = {}
            for pool in pools:
                kept = previous.get(pool.id) or tracked.get(pool.id)
                if kept is None:
                    kept = self._tracker.track(pool)
                else:
                    kept.follow(pool)
                tracked[pool.id] = kept
            self._tracked = tracked
        for pool_id, gone in previous.items():
            if pool_id not in tracked:
                gone.drop()

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
        self._wait(collection, deadline)
        if self._extend(collection, deadline):
            self._wait(collection, deadline)
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

    def collect_one(self, pool: Pool, deadline: float, *, listed: bool = True) -> PoolResult:
        """One pool alone, for /probe; not shared with other scrapes."""
        tracked = self._tracked_for_probe(pool, listed=listed)
        future = self._executor.submit(tracked.collect, deadline)
        try:
            result = future.result(timeout=max(0.0, deadline - self._clock()))
        except FutureTimeout:
            tracked.count_timeout()
            return PoolResult.timed_out(pool, max(0.0, deadline - self._clock()))
        if result.error_code == TIMEOUT:
            tracked.count_timeout()
        return result

    def close(self, *, wait: bool = False) -> None:
        """At exit: what is still queued is not needed; `wait` for what runs."""
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def _listed(self) -> tuple[Tracked, ...]:
        with self._lock:
            return tuple(self._tracked.values())

    def _new_executor(self, scrape: Scrape) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=scrape.max_concurrency, thread_name_prefix="collect")

    def _wait(self, collection: _Collection, deadline: float) -> None:
        with self._lock:
            futures = list(collection.futures.values())
        wait_for_futures(futures, timeout=max(0.0, deadline - self._clock()))

    def _usable_collection(self, now: float, arrived: float) -> tuple[_Collection | None, bool]:
        """The latest collection when this scrape may use it, and whether only as a cache."""
        latest = self._latest
        if latest is None or set(latest.futures) != set(self._tracked):
            return None, False
        scrape = self._scrape
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
        ordered = sorted(self._tracked.values(), key=lambda tracked: tracked.timed_out_last)
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
                tracked
                for pool_id, tracked in self._tracked.items()
                if (future := collection.futures.get(pool_id)) is not None
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
        missing = [
            tracked
            for pool_id, tracked in self._tracked.items()
            if pool_id not in collection.futures
        ]
        if collection is self._latest and missing:
            collection.finished_at = None
            self._submit(collection, missing)

    def _submit(self, collection: _Collection, pools: Sequence[Tracked]) -> None:
        """Call with the scraper's lock held."""
        for tracked in pools:
            future = self._executor.submit(tracked.collect, collection.deadline)
            collection.futures[tracked.pool.id] = future
            future.add_done_callback(functools.partial(self._finished, collection))

    def _finished(self, collection: _Collection, _: Future[PoolResult]) -> None:
        if collection.done() and collection.finished_at is None:
            collection.finished_at = self._clock()

    def _snapshot_of(self, collection: _Collection, *, complete_only: bool = False) -> Snapshot:
        """The collection's results for the pools listed now (a pool dropped meanwhile is
        not reported; one added meanwhile is, as not collected)."""
        with self._lock:
            listed = tuple(self._tracked.items())
            futures = dict(collection.futures)
        results = []
        complete = True
        for pool_id, tracked in listed:
            future = futures.get(pool_id)
            if future is not None and future.done() and not future.cancelled():
                result = future.result()
                if result.error_code == TIMEOUT:
                    self._count_timeout_once(collection, tracked)
                results.append(result)
                continue
            complete = False
            if not complete_only:
                self._count_timeout_once(collection, tracked)
                results.append(tracked.not_collected(self._clock() - collection.started))
        return Snapshot(tuple(results), complete=complete)

    def _count_timeout_once(self, collection: _Collection, tracked: Tracked) -> None:
        """A pool reported as timed out counts once per collection, however many scrapes
        shared that collection and whether the worker or the waiter saw the deadline first."""
        pool_id = tracked.pool.id
        with self._lock:
            first_report = pool_id not in collection.timeouts_counted
            collection.timeouts_counted.add(pool_id)
        if first_report:
            tracked.count_timeout()

    def _tracked_for_probe(self, pool: Pool, *, listed: bool) -> Tracked:
        with self._lock:
            tracked = self._tracked.get(pool.id) if listed else None
            if tracked is not None:
                return tracked
            tracked = self._probed.pop(pool.id, None) or self._tracker.track(pool, listed=False)
            self._probed[pool.id] = tracked
            while len(self._probed) > MAX_PROBED_POOLS:
                _, evicted = self._probed.popitem(last=False)
                evicted.drop()
            return tracked
