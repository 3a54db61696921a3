"""Clocks for tests that must not wait."""

from __future__ import annotations

import threading


class SteppingClock:
    """Time that moves only when someone sleeps: rate limits without waiting."""

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
