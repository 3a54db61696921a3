"""The gate every HTTP attempt to Cognito passes: deadline, rate limits, and counting.

botocore retries inside one client call, so the scraper states which pool and deadline a call
is for (`calling_for`), and every attempt of that call, retries included, takes its slots from
the pool's and the account-region's buckets and is counted.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

from exporter.metrics import ExporterMetrics
from exporter.ratelimit import BucketRegistry, DeadlineExceeded

THROTTLING_CODES = frozenset({"TooManyRequests", "Throttling", "ThrottlingException"})
THROTTLE_BACK_OFF_SECONDS = 1.0


@dataclass(frozen=True)
class CallScope:
    pool_id: str
    account_key: Hashable
    deadline: float


_scope: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "cognito_call_scope", default=None
)


@contextlib.contextmanager
def calling_for(scope: CallScope) -> Iterator[None]:
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)


class AttemptGate:
    def __init__(
        self,
        metrics: ExporterMetrics,
        account_buckets: BucketRegistry,
        pool_buckets: BucketRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._account_buckets = account_buckets
        self._pool_buckets = pool_buckets
        self._clock = clock

    def set_rates(self, account_rate: float, pool_rate: float) -> None:
        """New limits (a reload); buckets whose rate did not change keep their state."""
        if account_rate != self._account_buckets.rate:
            self._account_buckets = BucketRegistry(account_rate, self._clock)
        if pool_rate != self._pool_buckets.rate:
            self._pool_buckets = BucketRegistry(pool_rate, self._clock)

    def before_attempt(self, operation: str) -> None:
        scope = _scope.get()
        if scope is not None:
            if self._clock() >= scope.deadline:
                raise DeadlineExceeded("the scrape deadline passed before this request")
            self._pool_buckets.bucket(scope.pool_id).acquire(scope.deadline)
            self._account_buckets.bucket(scope.account_key).acquire(scope.deadline)
        self._metrics.api_requests.labels(operation=operation).inc()

    def after_attempt(self, operation: str, error_code: str | None) -> None:
        if error_code is None:
            return
        scope = _scope.get()
        pool_id = scope.pool_id if scope is not None else ""
        self._metrics.api_errors.labels(user_pool_id=pool_id, error_code=error_code).inc()
        if error_code in THROTTLING_CODES and scope is not None:
            self._account_buckets.bucket(scope.account_key).back_off(THROTTLE_BACK_OFF_SECONDS)
