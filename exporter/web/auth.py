"""Basic auth and the server-wide rate limit of the web config, checked in the event loop
before a request may queue for a worker.

bcrypt is slow on purpose, so it never runs on a request worker or in the event loop: checks
run one at a time on a thread of their own, at most MAX_WAITING_CHECKS wait for it, and a
request that finds the queue full is told to come back (503), never that its password is
wrong. Honest clients are remembered after their first check, across reloads of an
unchanged user, and never wait behind a flood of wrong passwords. A refused check takes as
long as a check against the costliest hash, whichever user it named, so its time tells
nothing of which users exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import bcrypt

_BCRYPT_MAX_PASSWORD_BYTES = 72
MAX_WAITING_CHECKS = 4
# a refused check is padded to this multiple of what a check of the costliest hash took
_FLOOR_MARGIN = 1.25
_BCRYPT_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")


class Verdict(enum.Enum):
    GRANTED = "granted"
    REFUSED = "refused"
    BUSY = "busy"  # too many checks waiting: nothing was learnt of the password


class SuccessCache:
    """Credentials that passed a check, under a salted SHA-256 of user, hash and password
    (the least recently used dropped past `size`). One for the process, so a reload that
    keeps a user's hash keeps its clients remembered: a changed hash or password, or a
    removed user, never matches an entry again."""

    def __init__(self, size: int = 1024) -> None:
        self._salt = secrets.token_bytes(32)
        self._size = size
        self._entries: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        digest = hashlib.sha256(self._salt)
        for part in (user.encode(), hashed, password):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        return digest.digest()

    def __contains__(self, key: bytes) -> bool:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return True
            return False

    def add(self, key: bytes) -> None:
        with self._lock:
            self._entries[key] = None
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


SUCCESSES = SuccessCache()


@dataclass(frozen=True)
class RateLimit:
    """A token bucket shared by all requests: `burst` tokens, one more every `interval`."""

    interval: float
    burst: int


class BasicAuth:
    """Checks `Authorization: Basic ...` against bcrypt hashes.

    Unknown users are checked against the costliest configured hash and refused whatever
    the outcome. Successful checks are remembered in `successes`, so a scraper does not pay
    for bcrypt on every request; failures are never remembered.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        successes: SuccessCache = SUCCESSES,
        max_waiting: int = MAX_WAITING_CHECKS,
    ) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._hashes = {name: hashed.encode("ascii") for name, hashed in users.items()}
        self._decoy = max(self._hashes.values(), key=lambda hashed: int(hashed[4:6]))
        self._successes = successes
        self._max_waiting = max_waiting
        self._checks_in_flight = 0
        self._refusal_floor: float | None = None

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(sorted(self._hashes))

    def __repr__(self) -> str:
        return f"BasicAuth(users={list(self.users)!r})"

    def check(self, authorization_header: str | None) -> bool:
        """The verdict, in the calling thread (no queue, no padding): for tests and tools."""
        attempt = self._attempt(authorization_header)
        if attempt is None:
            return False
        if attempt.cached:
            return True
        matched, _ = _bcrypt_matches(attempt.password, attempt.hashed)
        return self._verdict(attempt, matched)

    async def verify(self, authorization_header: str | None) -> Verdict:
        """The verdict for a request, awaited in the event loop."""
        attempt = self._attempt(authorization_header)
        if attempt is None:
            return Verdict.REFUSED
        if attempt.cached:
            return Verdict.GRANTED
        started = time.monotonic()
        if self._checks_in_flight > self._max_waiting:
            return Verdict.BUSY
        self._checks_in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            matched, took = await loop.run_in_executor(
                _BCRYPT_THREAD, _bcrypt_matches, attempt.password, attempt.hashed
            )
            if attempt.hashed is self._decoy:
                self._learn_floor(took)
            elif self._refusal_floor is None and not matched:
                _, took = await loop.run_in_executor(
                    _BCRYPT_THREAD, _bcrypt_matches, b"", self._decoy
                )
                self._learn_floor(took)
        finally:
            self._checks_in_flight -= 1
        if self._verdict(attempt, matched):
            return Verdict.GRANTED
        floor = self._refusal_floor or 0.0
        await asyncio.sleep(max(0.0, started + floor - time.monotonic()))
        return Verdict.REFUSED

    def _attempt(self, header: str | None) -> _Attempt | None:
        credentials = parse_basic_credentials(header)
        if credentials is None:
            return None
        user, password = credentials
        known = self._hashes.get(user)
        hashed = known if known is not None else self._decoy
        key = self._successes.key(user, hashed, password)
        # an unknown user is checked against the decoy, never taken from what was remembered
        cached = known is not None and key in self._successes
        return _Attempt(known is not None, hashed, password, key, cached)

    def _verdict(self, attempt: _Attempt, matched: bool) -> bool:
        if not matched or not attempt.known:
            return False
        self._successes.add(attempt.key)
        return True

    def _learn_floor(self, took: float) -> None:
        self._refusal_floor = max(self._refusal_floor or 0.0, took * _FLOOR_MARGIN)


@dataclass(frozen=True)
class _Attempt:
    known: bool
    hashed: bytes
    password: bytes
    key: bytes
    cached: bool


def _bcrypt_matches(password: bytes, hashed: bytes) -> tuple[bool, float]:
    """Whether `password` matches, and how long the check took."""
    started = time.monotonic()
    # bcrypt reads 72 bytes at most; htpasswd and Go's bcrypt do the same.
    password = password[:_BCRYPT_MAX_PASSWORD_BYTES]
    try:
        matched = bool(bcrypt.checkpw(password, hashed))
    except ValueError:
        matched = False
    return matched, time.monotonic() - started


def parse_basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from `Basic base64(user:password)`; None for anything else."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class RequestLimiter:
    """One token bucket for the whole server, started afresh when its settings change."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._settings: RateLimit | None = None
        self._tokens = 0.0
        self._last = 0.0

    def allow(self, settings: RateLimit) -> bool:
        with self._lock:
            now = self._clock()
            if settings != self._settings:
                self._settings = settings
                self._tokens = float(settings.burst)
            else:
                refill = (now - self._last) / settings.interval
                self._tokens = min(float(settings.burst), self._tokens + refill)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False
