"""Request-rate limits shared by every scrape: one bucket per account+region, one per pool.

Each bucket spaces requests evenly (no burst) and also keeps the moments its last requests
actually left: a request waits until at most `rate` others left in the past window. The window
is a little longer than a second because a request is sent a few milliseconds after it leaves
the bucket, and the service counts arrivals, not permissions. A caller that would have to wait
past its deadline is refused at once instead of queueing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable

WINDOW_SECONDS = 1.05
# buckets kept per registry before idle ones are let go: each probed pool id has a bucket
MAX_BUCKETS = 10_000


class DeadlineExceeded(Exception):
    """The scrape's time ran out before the request could be made."""

    error_code = "Timeout"


class Postponed(DeadlineExceeded):
    """No request could be made before the deadline (no slot in a budget, the pool busy):
    nothing failed, the refresh waits for its next turn."""


class TokenBucket:
    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._departures: deque[float] = deque()
        # callers waiting for a slot who come before the yielding ones (refreshes in the
        # background give way to scrapes)
        self._waiting_first = 0
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """A new rate, in force from the next request; what left recently still counts."""
        with self._lock:
            self.rate = rate
            self._interval = 1.0 / rate
            self._per_window = max(1, math.floor(rate))
            self._departures = deque(self._departures, maxlen=self._per_window)

    def acquire(self, deadline: float, *, yielding: bool = False) -> None:
        """Wait for this caller's turn; raise Postponed if it comes after the deadline. A
        `yielding` caller takes a slot only while no other caller is waiting."""
        waiting = False
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    slot = max(now, self._next_slot, self._window_opens())
                    if slot > deadline:
                        raise Postponed("rate limit: no request slot before the deadline")
                    if yielding and self._waiting_first:
                        slot = max(slot, now + self._interval)
                    elif slot <= now:
                        self._next_slot = now + self._interval
                        self._departures.append(now)
                        return
                    elif not yielding and not waiting:
                        waiting = True
                        self._waiting_first += 1
                self._sleep(slot - now)
        finally:
            if waiting:
                with self._lock:
                    self._waiting_first -= 1

    def back_off(self, seconds: float) -> None:
        """Push every later slot back, so all callers slow down together after throttling."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)

    def idle(self) -> bool:
        """Whether a new bucket would behave just as this one does from now on."""
        with self._lock:
            now = self._clock()
            last = self._departures[-1] if self._departures else -math.inf
            return self._next_slot <= now and last + WINDOW_SECONDS <= now

    def _window_opens(self) -> float:
        if len(self._departures) < self._per_window:
            return 0.0
        return self._departures[0] + WINDOW_SECONDS


class BucketRegistry:
    """Buckets by key, created on first use and kept across scrapes; past `max_buckets`,
    the least recently used bucket is let go once it is idle."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_buckets: int = MAX_BUCKETS,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._max_buckets = max_buckets
        self._lock = threading.Lock()
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()
        self._rates: dict[Hashable, float] = {}

    def set_default_rate(self, rate: float) -> None:
        """The rate of every key without a rate of its own."""
        with self._lock:
            self.rate = rate
            for key, bucket in self._buckets.items():
                if key not in self._rates:
                    bucket.set_rate(rate)

    def set_rate(self, key: Hashable, rate: float | None) -> None:
        """`key`'s own rate (None: the default again)."""
        with self._lock:
            if rate is None:
                self._rates.pop(key, None)
            else:
                self._rates[key] = rate
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.set_rate(self.rate if rate is None else rate)

    def rate_of(self, key: Hashable) -> float:
        return self._rates.get(key, self.rate)

    def __len__(self) -> int:
        return len(self._buckets)

    def bucket(self, key: Hashable) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                self._buckets.move_to_end(key)
                return bucket
            if len(self._buckets) >= self._max_buckets:
                _, oldest = next(iter(self._buckets.items()))
                if oldest.idle():
                    self._buckets.popitem(last=False)
            bucket = TokenBucket(self._rates.get(key, self.rate), self._clock, self._sleep)
            self._buckets[key] = bucket
            return bucket
