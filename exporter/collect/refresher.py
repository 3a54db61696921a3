"""Refreshing the pools of large regions between scrapes, as their schedule makes them due.

One thread decides, a few workers refresh: the most overdue pools first, at most
IN_FLIGHT_SHARE of `max_concurrency` at once, each refresh bounded by the scrape timeout.
Their requests give way to those of scrapes in the budget, so the budget's spare time goes to
them and a scrape's pools never wait behind them. The thread starts with the first scrape that
finds a region too large for every pool at every scrape, and sleeps until the next pool falls
due, a refresh ends, or the pools or settings change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from exporter.collect.schedule import RefreshPlanner, Standing
from exporter.collect.served import PoolResult
from exporter.config.model import Pool
from exporter.config.schema import Scrape

log = logging.getLogger(__name__)

IN_FLIGHT_SHARE = 0.5
# after an unexpected error the thread looks again this much later instead of ending
RETRY_SECONDS = 5.0


class Refreshable(Protocol):
    @property
    def pool(self) -> Pool: ...

    def collect(self, deadline: float, *, background: bool = False) -> PoolResult: ...

    def standing(self) -> Standing: ...


class BackgroundRefresher:
    def __init__(
        self,
        pools: Callable[[], Sequence[Refreshable]],
        planner: RefreshPlanner,
        scrape: Callable[[], Scrape],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pools = pools
        self._planner = planner
        self._scrape = scrape
        self._clock = clock
        self._wake = threading.Condition()
        self._in_flight: dict[str, Future[PoolResult]] = {}
        # the pools found due at the last look, most overdue first, and when the next falls due
        self._queue: deque[Refreshable] = deque()
        self._next_due: float | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._concurrency = scrape().max_concurrency
        self._workers = self._new_workers(self._concurrency)

    def start(self) -> None:
        """Run from now on (once; later calls do nothing)."""
        with self._wake:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name="refresh", daemon=True)
            self._thread.start()

    def configure(self, scrape: Scrape) -> None:
        """New settings: workers of another number replace the old, which finish what they
        run."""
        with self._wake:
            if scrape.max_concurrency != self._concurrency:
                self._workers.shutdown(wait=False, cancel_futures=False)
                self._concurrency = scrape.max_concurrency
                self._workers = self._new_workers(self._concurrency)
        self.wake()

    def wake(self) -> None:
        """Look again at once: pools or settings changed."""
        with self._wake:
            self._queue.clear()
            self._wake.notify_all()

    def stop(self, *, wait: bool = False) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        self._workers.shutdown(wait=wait, cancel_futures=True)

    @staticmethod
    def _new_workers(concurrency: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh")

    def _run(self) -> None:
        failed_before = False
        while True:
            with self._wake:
                if self._stopped:
                    return
            try:
                wait = self._round()
            except Exception as error:  # the refresher must outlive any one round
                if not failed_before:
                    log.error(
                        "refreshing pools in the background failed; retrying",
                        extra={"fields": {"error": type(error).__name__}},
                        exc_info=log.isEnabledFor(logging.DEBUG),
                    )
                failed_before = True
                wait = RETRY_SECONDS
            else:
                failed_before = False
            with self._wake:
                if self._stopped:
                    return
                self._wake.wait(wait)

    def _round(self) -> float | None:
        """Start the due refreshes there is room for; how long to sleep after (None: until
        woken by a refresh that ends)."""
        scrape = self._scrape()
        now = self._clock()
        with self._wake:
            busy = set(self._in_flight)
            queue = self._queue
        if not queue:
            pools = [tracked for tracked in self._pools() if tracked.pool.id not in busy]
            ready, next_due = self._planner.in_background(
                [(tracked, tracked.standing()) for tracked in pools], now
            )
            with self._wake:
                self._queue.extend(ready)
                self._next_due = next_due
        room = max(1, int(scrape.max_concurrency * IN_FLIGHT_SHARE)) - len(busy)
        while room > 0:
            with self._wake:
                if not self._queue:
                    break
                tracked = self._queue.popleft()
            # found due earlier: a scrape or a reload may have refreshed or dropped it since
            if tracked.pool.id in busy or not self._planner.due_in_background(
                tracked.standing(), now
            ):
                continue
            self._refresh(tracked, now + scrape.timeout)
            room -= 1
        with self._wake:
            if self._queue:
                return None
            next_due = self._next_due
        return None if next_due is None else max(0.0, next_due - self._clock())

    def _refresh(self, tracked: Refreshable, deadline: float) -> None:
        pool_id = tracked.pool.id
        try:
            future = self._workers.submit(tracked.collect, deadline, background=True)
        except RuntimeError:  # shut down meanwhile
            return
        with self._wake:
            self._in_flight[pool_id] = future
        future.add_done_callback(lambda _: self._done(pool_id))

    def _done(self, pool_id: str) -> None:
        with self._wake:
            self._in_flight.pop(pool_id, None)
            self._wake.notify_all()
