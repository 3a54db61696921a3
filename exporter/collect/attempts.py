"""The gate every HTTP attempt to AWS passes: deadline, rate limits, counting, and a watchdog
that ends an attempt still running at its deadline, whatever the peer does.

botocore retries inside one client call, so the caller states which pool and deadline a call
is for (`calling_for`), and every attempt of that call, retries included, takes its slots from
the pool's and the account-region's buckets and is counted once. A socket's read timeout
bounds each read, not the answer: a peer that sends a byte at a time would hold a collection
for as long as it likes. So every attempt also has a deadline of its own (the call's, and at
most `attempt_timeout` after it starts); an attempt still running then has its socket shut,
which ends it at once: the call fails as a Timeout and is not retried.
"""

from __future__ import annotations

import contextlib
import contextvars
import heapq
import itertools
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import BucketRegistry, DeadlineExceeded, Postponed

THROTTLING_CODES = frozenset({"TooManyRequests", "Throttling", "ThrottlingException"})
THROTTLE_BACK_OFF_SECONDS = 1.0
# answers timed to tell how long one takes, and the most time kept back for one before a
# deadline (a slower endpoint still gets its requests, and fails as a Timeout when it is late)
ANSWERS_TIMED = 64
MIN_ANSWER_RESERVE_SECONDS = 0.05
MAX_ANSWER_RESERVE_SECONDS = 1.0
RATE_LIMITED_SERVICE = "cognito-idp"


class AttemptCutOff(DeadlineExceeded):
    """An attempt ran past its deadline and was ended; it is not retried."""


@dataclass(eq=False)
class _Attempt:
    deadline: float
    started: float = 0.0
    connection: Any = None
    raw_socket: socket.socket | None = None
    finished: bool = False
    cut_off: bool = False


@dataclass(eq=False)
class CallScope:
    """What the calls made in this scope are for: the pool whose bucket they take, and the
    `label` their errors are counted under ("" when not for a listed pool); `account_key`
    None means no Cognito buckets (the caller paces itself, as discovery does)."""

    pool_id: str
    account_key: AccountRegion | None
    deadline: float
    label: str = ""
    # a refresh in the background: its requests give way to those of scrapes
    yielding: bool = False
    attempt: _Attempt | None = field(default=None, repr=False)
    last_attempt_failed: bool = False
    cut_off: bool = False


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "cognito_call_scope", default=None
)


@contextlib.contextmanager
def calling_for(scope: CallScope) -> Iterator[CallScope]:
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)
        if scope.attempt is not None:
            scope.attempt.finished = True


def failure_counted_by_attempt(scope: CallScope) -> bool:
    """Whether the failure a call in `scope` just raised is the outcome of its last attempt,
    which the gate counted already; otherwise (credentials, an answer that could not be read,
    paging) the caller counts it."""
    return scope.last_attempt_failed


class AttemptWatchdog:
    """Shuts the socket of every attempt still running at its deadline. The socket is learnt
    from Python's audit events: `socket.connect` (the connection and TLS handshake phase) and
    `http.client.send` (every request, new or kept-alive connections alike), both raised in
    the thread making the attempt, where the call's scope is known."""

    _installed = False
    _install_lock = threading.Lock()

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        AttemptWatchdog._install_audit_hook()

    def watch(self, attempt: _Attempt) -> None:
        with self._lock:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="attempt-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is attempt:
                self._wake.notify()

    def finished(self, attempt: _Attempt) -> None:
        with self._lock:
            attempt.finished = True

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline = self._heap[0][0]
                wait = deadline - self._clock()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                _, _, attempt = heapq.heappop(self._heap)
                attempt.cut_off = True
                _shut(attempt)

    @classmethod
    def _install_audit_hook(cls) -> None:
        with cls._install_lock:
            if not cls._installed:
                sys.addaudithook(_learn_socket)
                cls._installed = True


def _learn_socket(event: str, args: tuple[Any, ...]) -> None:
    if event != "http.client.send" and event != "socket.connect":
        return
    scope = _scope.get()
    attempt = scope.attempt if scope is not None else None
    if attempt is None or attempt.finished:
        return
    if event == "http.client.send":
        attempt.connection = args[0]
    elif isinstance(args[0], socket.socket):
        attempt.raw_socket = args[0]
    if attempt.cut_off:
        _shut(attempt)


def _shut(attempt: _Attempt) -> None:
    """Shut the attempt's socket. The base class's shutdown() on purpose: SSLSocket's own
    would drop the TLS object under the thread still reading from it."""
    connection_socket = getattr(attempt.connection, "sock", None)
    for candidate in (connection_socket, attempt.raw_socket):
        if isinstance(candidate, socket.socket) and candidate.fileno() != -1:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(candidate, socket.SHUT_RDWR)
            return


class AnswerTimes:
    """How long recent answers took: the time kept back before a deadline is half as long
    again as what nine in ten of them took, between MIN_ and MAX_ANSWER_RESERVE_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=ANSWERS_TIMED)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(max(0.0, seconds))

    def reserve(self) -> float:
        with self._lock:
            recent = sorted(self._recent)
        usual = recent[(len(recent) * 9) // 10] if recent else 0.0
        return min(MAX_ANSWER_RESERVE_SECONDS, max(MIN_ANSWER_RESERVE_SECONDS, 1.5 * usual))


@dataclass(frozen=True)
class AccountRegion:
    """What a budget belongs to: an account id, or `credentials:NAME` for a credential set
    whose account is not known, and a region."""

    account: str
    region: str

    @classmethod
    def of(cls, account: str | None, credentials: str, region: str) -> AccountRegion:
        """The budget of calls with `credentials` in `region`, whose account is `account`
        (None while it cannot be resolved)."""
        return cls(account or f"credentials:{credentials}", region)


class AttemptGate:
    def __init__(
        self,
        metrics: ExporterMetrics,
        account_buckets: BucketRegistry,
        pool_buckets: BucketRegistry,
        clock: Callable[[], float] = time.monotonic,
        attempt_timeout: float = 10.0,
    ) -> None:
        self._metrics = metrics
        self._account_buckets = account_buckets
        self._pool_buckets = pool_buckets
        self._clock = clock
        self.attempt_timeout = attempt_timeout
        self._watchdog = AttemptWatchdog(clock)
        self._answer_times = AnswerTimes()

    def set_rates(self, account_rate: float, pool_rate: float) -> None:
        """New default limits (a reload), in force from each bucket's next request."""
        self._account_buckets.set_default_rate(account_rate)
        self._pool_buckets.set_default_rate(pool_rate)

    def account_rate(self, account_key: AccountRegion) -> float:
        """The budget of one account and region, in requests a second."""
        return self._account_buckets.rate_of(account_key)

    def set_account_rate(self, account_key: AccountRegion, rate: float | None) -> None:
        """The budget of one account and region (None: the default again)."""
        self._account_buckets.set_rate(account_key, rate)

    def before_attempt(self, service: str, operation: str) -> None:
        scope = _scope.get()
        if scope is not None:
            if scope.cut_off:
                raise AttemptCutOff("the answer took longer than its deadline; not retried")
            # a request that could not be answered before the deadline is not started: it
            # would end as a failure the pool never had
            latest_start = scope.deadline - self._answer_times.reserve()
            if self._clock() >= latest_start:
                raise Postponed("no time left for an answer before the deadline")
            if scope.account_key is not None and service == RATE_LIMITED_SERVICE:
                yielding = scope.yielding
                self._pool_buckets.bucket(scope.pool_id).acquire(latest_start, yielding=yielding)
                self._account_buckets.bucket(scope.account_key).acquire(
                    latest_start, yielding=yielding
                )
                self._metrics.api_account_requests.labels(
                    account_id=scope.account_key.account, region=scope.account_key.region
                ).inc()
            now = self._clock()
            attempt = _Attempt(min(scope.deadline, now + self.attempt_timeout), now)
            scope.attempt = attempt
            scope.last_attempt_failed = False
            self._watchdog.watch(attempt)
        self._metrics.api_requests.labels(operation=operation).inc()

    def answer_arrived(self, service: str, operation: str) -> None:
        """Before botocore reads an answer: one cut off at its deadline is not read at all (what
        arrived of it could look like a complete, empty answer)."""
        scope = _scope.get()
        attempt = scope.attempt if scope is not None else None
        if scope is not None and attempt is not None and attempt.cut_off:
            self._watchdog.finished(attempt)
            scope.attempt = None
            scope.cut_off = True
            raise AttemptCutOff("the answer took longer than its deadline; not retried")

    def after_attempt(self, service: str, operation: str, error_code: str | None) -> None:
        scope = _scope.get()
        attempt = scope.attempt if scope is not None else None
        if scope is not None and attempt is not None:
            self._watchdog.finished(attempt)
            scope.attempt = None
            if attempt.cut_off:
                # whatever botocore made of the cut answer (an error, or a truncated "success")
                # the call ends here as a Timeout, counted once where its collection is reported
                scope.cut_off = True
                raise AttemptCutOff("the answer took longer than its deadline; not retried")
            self._answer_times.observe(self._clock() - attempt.started)
        if error_code is None:
            return
        if scope is not None:
            scope.last_attempt_failed = True
        label = scope.label if scope is not None else ""
        self._metrics.api_errors.labels(user_pool_id=label, error_code=error_code).inc()
        if error_code in THROTTLING_CODES and scope is not None and scope.account_key is not None:
            self._account_buckets.bucket(scope.account_key).back_off(THROTTLE_BACK_OFF_SECONDS)
            self._metrics.api_account_throttles.labels(
                account_id=scope.account_key.account, region=scope.account_key.region
            ).inc()
