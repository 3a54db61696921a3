"""Collecting the pools a scrape refreshes, within its deadline, shared by concurrent scrapes.

A scrape refreshes the pools their schedule says (`exporter.collect.schedule`: every pool
while the budget affords it) in parallel on a bounded thread pool, and serves every pool's
last known state; pools of large regions are refreshed between scrapes by the background
refresher. A scrape joins a collection that was under way when it arrived, or that finished
after it arrived, instead of starting another (HA Prometheus pairs, a dashboard beside
Prometheus, scrapes that queued for a worker); with `cache_ttl` a recent finished collection
is served as it is. A pool not refreshed by the deadline serves what it knew, and the rest
goes out on time. One pool's failure never touches another's numbers.

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

from exporter.collect.refresher import BackgroundRefresher
from exporter.collect.schedule import RefreshPlanner, Standing
from exporter.collect.served import TIMEOUT, PoolResult
from exporter.config.model import Pool
from exporter.config.schema import Scrape

log = logging.getLogger(__name__)

MAX_PROBED_POOLS = 1000
# a joining scrape collects again what its collection ran out of time for if it has this long
MIN_EXTENSION_SECONDS = 1.0
# a refresh ends this much before the scrape stops waiting for it, so a call cut off at its
# deadline is reported by the scrape it was made for (at most a quarter of the window)
REPORT_GRACE_SECONDS = 0.25
PROBE_ASSESS_SECONDS = 10.0


class Tracked(Protocol):
    """A pool as the scraper uses it (`exporter.collect.pool.TrackedPool`)."""

    @property
    def pool(self) -> Pool: ...

    @property
    def timed_out_last(self) -> bool: ...

    def follow(self, pool: Pool) -> None: ...

    def collect(self, deadline: float, *, background: bool = False) -> PoolResult: ...

    def latest(self) -> PoolResult: ...

    def standing(self) -> Standing: ...

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
    # the pools listed when it started; those it refreshes have a future
    listed: frozenset[str]
    futures: dict[str, Future[PoolResult]] = field(default_factory=dict)
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
        planner: RefreshPlanner | None = None,
    ) -> None:
        self._tracker = tracker
        self._clock = clock
        self._lock = threading.Lock()
        self._scrape = scrape
        # without a planner every region counts as small: every pool at every scrape
        self._planner = planner or RefreshPlanner(lambda account: float("inf"))
        self._planner.configure(scrape)
        self._executor = self._new_executor(scrape)
        self._background = BackgroundRefresher(
            self._listed, self._planner, lambda: self._scrape, clock
        )
        # pool id -> tracked pool, in the order pools are listed
        self._tracked: dict[str, Tracked] = {}
        self._probed: OrderedDict[str, Tracked] = OrderedDict()
        self._latest: _Collection | None = None
        self._probes_assessed = -PROBE_ASSESS_SECONDS
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
        self._planner.configure(scrape)
        self._background.configure(scrape)
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
        self._background.wake()

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
        if self._planner.background_needed:
            self._background.start()
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
        """One pool alone, for /probe; not shared with other scrapes. A pool its schedule
        does not call due serves what is known of it."""
        tracked = self._tracked_for_probe(pool, listed=listed)
        now = self._clock()
        self._assess_for_probes(now)
        if not self._planner.due_for_probe(tracked.standing(), now):
            return tracked.latest()
        future = self._executor.submit(tracked.collect, self._refresh_deadline(now, deadline))
        try:
            return future.result(timeout=max(0.0, deadline - self._clock()))
        except FutureTimeout:
            return tracked.latest()

    def _assess_for_probes(self, now: float) -> None:
        """Every PROBE_ASSESS_SECONDS at most, what a /metrics scrape would assess (full re-read
        intervals, lag), for an exporter scraped through /probe alone."""
        with self._lock:
            if now - self._probes_assessed < PROBE_ASSESS_SECONDS:
                return
            self._probes_assessed = now
            every = [*self._tracked.values(), *self._probed.values()]
        self._planner.assess([tracked.standing() for tracked in every], now)

    def close(self, *, wait: bool = False) -> None:
        """At exit: what is still queued is not needed; `wait` for what runs."""
        self._background.stop(wait=wait)
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
        if latest is None or latest.listed != set(self._tracked):
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
        collection = _Collection(now, deadline, frozenset(self._tracked))
        self._latest = collection
        listed = [(tracked, tracked.standing()) for tracked in self._tracked.values()]
        probed = [tracked.standing() for tracked in self._probed.values()]
        chosen = self._planner.for_scrape(listed, deadline - now, now, probed)
        # pools that ran out of time last time go last, so they cannot keep the others waiting
        ordered = sorted(chosen, key=lambda tracked: tracked.timed_out_last)
        self._submit(collection, ordered)
        if not collection.futures:
            collection.finished_at = now
        return collection

    def _extend(self, collection: _Collection, deadline: float) -> bool:
        """A scrape with more time than the collection it joined: the pools that collection
        ran out of time for (timed out, or postponed before their turn came) are collected
        again by this scrape's deadline (once), for it and any scrape that joins later."""
        with self._lock:
            now = self._clock()
            if deadline <= collection.deadline or deadline - now < MIN_EXTENSION_SECONDS:
                return False
            timed_out = [
                tracked
                for pool_id, tracked in self._tracked.items()
                if (future := collection.futures.get(pool_id)) is not None
                and future.done()
                and not future.cancelled()
                and (
                    future.result().error_code == TIMEOUT
                    or not _refreshed_since(tracked, collection.started)
                )
            ]
            if not timed_out:
                return False
            collection.deadline = deadline
            collection.finished_at = None
            self._submit(collection, timed_out)
            return True

    def _add_missing(self, collection: _Collection) -> None:
        missing = [
            (tracked, tracked.standing())
            for pool_id, tracked in self._tracked.items()
            if pool_id not in collection.listed
        ]
        if collection is not self._latest or not missing:
            return
        collection.listed = frozenset(self._tracked)
        chosen = [
            tracked for tracked, standing in missing if self._planner.refreshed_at_scrapes(standing)
        ]
        if chosen:
            collection.finished_at = None
            self._submit(collection, chosen)

    def _submit(self, collection: _Collection, pools: Sequence[Tracked]) -> None:
        """Call with the scraper's lock held."""
        deadline = self._refresh_deadline(collection.started, collection.deadline)
        for tracked in pools:
            future = self._executor.submit(tracked.collect, deadline)
            collection.futures[tracked.pool.id] = future
            future.add_done_callback(functools.partial(self._finished, collection))

    @staticmethod
    def _refresh_deadline(started: float, deadline: float) -> float:
        return deadline - min(REPORT_GRACE_SECONDS, max(0.0, deadline - started) / 4)

    def _finished(self, collection: _Collection, _: Future[PoolResult]) -> None:
        if collection.done() and collection.finished_at is None:
            collection.finished_at = self._clock()

    def _snapshot_of(self, collection: _Collection, *, complete_only: bool = False) -> Snapshot:
        """The collection's results for the pools listed now, and the latest known of those
        it did not refresh (a pool dropped meanwhile is not reported)."""
        with self._lock:
            listed = tuple(self._tracked.items())
            futures = dict(collection.futures)
        results = []
        complete = True
        for pool_id, tracked in listed:
            future = futures.get(pool_id)
            if future is not None and future.done() and not future.cancelled():
                results.append(future.result())
                continue
            if future is not None or pool_id not in collection.listed:
                complete = False
                if complete_only:
                    continue
            results.append(tracked.latest())
        return Snapshot(tuple(results), complete=complete)

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


def _refreshed_since(tracked: Tracked, moment: float) -> bool:
    attempted_at = tracked.standing().attempted_at
    return attempted_at is not None and attempted_at >= moment
