"""Turns taken in rotation by key (an account and Region), so that no key's work, however
slow or endless, holds up another's by more than one turn.

Each key has its own line of items ready now; items set aside until a time wait apart and
join their key's line when it comes. `take` gives the first item of the next key in the
rotation that is not already taking a turn, and moves that key to the rotation's end; the
taker gives the key back (`release`) when its turn is over. Not thread-safe: its owner
holds its own lock around every call.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class FairTurns(Generic[K, T]):
    def __init__(self) -> None:
        # insertion order is the rotation: a key that took a turn goes to the end
        self._ready: dict[K, deque[T]] = {}
        self._later: list[tuple[float, int, K, T]] = []
        self._order = itertools.count()
        self._taking: set[K] = set()

    def __len__(self) -> int:
        """Items ready or set aside (not those taking a turn)."""
        return sum(len(line) for line in self._ready.values()) + len(self._later)

    @property
    def taking(self) -> int:
        """How many keys are taking a turn now."""
        return len(self._taking)

    def put(self, key: K, item: T, at: float | None = None) -> None:
        """`item` in `key`'s line now, or set aside until `at`."""
        if at is None:
            self._ready.setdefault(key, deque()).append(item)
        else:
            heapq.heappush(self._later, (at, next(self._order), key, item))

    def take(self, now: float) -> tuple[K, T] | None:
        """The next key's first item, that key now taking its turn; None when every key with
        an item ready is taking one already, or none has any."""
        while self._later and self._later[0][0] <= now:
            _, _, key, item = heapq.heappop(self._later)
            self.put(key, item)
        for key, line in self._ready.items():
            if key in self._taking:
                continue
            item = line.popleft()
            del self._ready[key]
            if line:
                self._ready[key] = line
            self._taking.add(key)
            return key, item
        return None

    def release(self, key: K) -> None:
        self._taking.discard(key)

    def next_due(self) -> float | None:
        """When the first item set aside comes due, if any is."""
        return self._later[0][0] if self._later else None

    def clear(self) -> None:
        self._ready.clear()
        self._later.clear()
