"""Request-rate limits shared by every scrape: one bucket per account+region, one per pool.

Each bucket spaces requests evenly (generic cell rate algorithm with no burst), so any
one-second window holds at most `rate` requests. A caller that would have to wait past
its deadline is refused at once instead of queueing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class DeadlineExceeded(Exception):
    """The scrape's time ran out before the request could be made."""

    error_code = "Timeout"


class TokenBucket:
    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def acquire(self, deadline: float) -> None:
        """Wait for this caller's slot; raise DeadlineExceeded if it comes after the deadline."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            if slot > deadline:
                raise DeadlineExceeded("rate limit: no request slot before the deadline")
            self._next_slot = slot + self._interval
        if slot > now:
            self._sleep(slot - now)

    def back_off(self, seconds: float) -> None:
        """Push every later slot back, so all callers slow down together after throttling."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)


class BucketRegistry:
    """Buckets by key, created on first use and kept across scrapes."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[Hashable, TokenBucket] = {}

    def bucket(self, key: Hashable) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = TokenBucket(self._rate, self._clock, self._sleep)
                self._buckets[key] = bucket
            return bucket
