"""Collecting one pool: its list read through its history, the result a scrape reports,
and the log lines its changes make (job status changes, failing and working again)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from exporter.cognito.clients import ClientFactory, ClientKey
from exporter.cognito.errors import error_code
from exporter.cognito.jobs import Job, PoolJobs
from exporter.collect.attempts import CallScope, calling_for, failure_counted_by_attempt
from exporter.collect.history import PoolHistory, ScanOutcome, StatusChange, recent_jobs
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import DeadlineExceeded
from exporter.collect.reading import jobs_per_page, page_bound
from exporter.collect.storage import HistoryStore
from exporter.config.model import Pool
from exporter.config.schema import Scrape, region_from_pool_id
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

TIMEOUT = DeadlineExceeded.error_code
NOT_COLLECTED = "not collected before the scrape deadline"
# errors of pools probed without being listed share one label value, so probing cannot grow
# the exporter's own series without bound
UNLISTED_POOL_LABEL = ""
# what a replica region of a multi-region pool answers
NOT_ENABLED = "OperationNotEnabled"


@dataclass(frozen=True)
class PoolResult:
    pool: Pool
    success: bool
    duration: float
    error_code: str | None = None
    error_message: str | None = None
    outcome: ScanOutcome | None = None
    recent_jobs: tuple[Job, ...] = ()

    @classmethod
    def timed_out(cls, pool: Pool, duration: float) -> PoolResult:
        return cls(pool, False, duration, error_code=TIMEOUT, error_message=NOT_COLLECTED)


class PoolState:
    """What is kept of one pool between scrapes and across reloads."""

    def __init__(self, pool_id: str, scrape: Scrape) -> None:
        self.history = PoolHistory(pool_id, scrape.max_jobs_per_pool, scrape.full_resync_interval)
        self.logged_error: str | None = None
        self.logged = False
        self.timed_out_last = False
        self.log_lock = threading.Lock()
        self.stored_history_read = False


class PoolCollector:
    """Collects single pools with one set of scrape settings and clients."""

    def __init__(
        self,
        scrape: Scrape,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        account_key: Callable[[Pool], Hashable] = lambda pool: (pool.credentials, pool.region),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_not_enabled: Callable[[Pool], bool] = lambda pool: False,
        store: HistoryStore | None = None,
    ) -> None:
        self._store = store
        self._scrape = scrape
        self._clients = clients
        self._metrics = metrics
        self._account_key = account_key
        self._on_not_enabled = on_not_enabled
        self._clock = clock
        self._wall_clock = wall_clock

    def collect(self, pool: Pool, state: PoolState, label: str, deadline: float) -> PoolResult:
        """One pool's result by `deadline`; its errors counted under `label`."""
        started = self._clock()
        scrape = self._scrape
        scope = CallScope(pool.id, self._account_key(pool), deadline, label)
        # what is stored is for listed pools only: probes of unlisted ones leave no file
        store = self._store if label == pool.id else None
        dropped = False
        try:
            outcome = self._scan(pool, state, scope, store)
        except Exception as error:  # any failure is this pool's alone
            code = error_code(error)
            # timeouts are counted where the scrape reports them, once per pool and collection
            if code != TIMEOUT and not failure_counted_by_attempt(scope):
                self._metrics.api_errors.labels(user_pool_id=label, error_code=code).inc()
            message = safe_error_text(error)
            # a discovered pool in a replica region is dropped, and discovery says so
            dropped = code == NOT_ENABLED and self._on_not_enabled(pool)
            if code == NOT_ENABLED:
                message = _not_enabled_message(pool)
            result = PoolResult(
                pool=pool,
                success=False,
                duration=self._clock() - started,
                error_code=code,
                error_message=message,
            )
        else:
            result = PoolResult(
                pool=pool,
                success=True,
                duration=self._clock() - started,
                outcome=outcome,
                recent_jobs=tuple(
                    recent_jobs(
                        outcome.jobs,
                        self._wall_clock(),
                        scrape.job_window,
                        scrape.max_jobs_per_pool,
                    )
                ),
            )
            _log_changes(pool, outcome.changes)
            if outcome.ordering_broken:
                log.warning(
                    "import jobs are not listed newest first; reading the pool in full",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
        state.timed_out_last = result.error_code == TIMEOUT
        if not dropped:
            log_result_change(state, result)
        return result

    def _scan(
        self, pool: Pool, state: PoolState, scope: CallScope, store: HistoryStore | None
    ) -> ScanOutcome:
        history = state.history
        remaining = scope.deadline - self._clock()
        if remaining <= 0 or not history.lock.acquire(timeout=remaining):
            raise DeadlineExceeded("the pool was still busy from an earlier scrape")
        try:
            scrape = self._scrape
            history.configure(scrape.max_jobs_per_pool, scrape.full_resync_interval)
            if store is not None and not state.stored_history_read:
                state.stored_history_read = True
                store.load(pool, history, self._clock(), self._wall_clock())
            client = self._clients.client(
                ClientKey(pool.credentials, pool.region, pool.endpoint_url)
            )
            reader = PoolJobs(client, pool.id, pool.page_size)
            denied_before = history.describe_denied
            with calling_for(scope):
                outcome = history.scan(
                    reader,
                    page_bound(pool.max_jobs, pool.page_size),
                    jobs_per_page(pool.page_size),
                    self._clock(),  # schedules full reads: a wall clock stepped back stops none
                    max_jobs=pool.max_jobs,
                )
            if history.describe_denied and not denied_before:
                log.warning(
                    "DescribeUserImportJob is not allowed: active jobs deep in the list are "
                    "paged to instead (allow cognito-idp:DescribeUserImportJob to save the calls)",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
            if store is not None:
                store.save(pool, history, self._clock(), self._wall_clock())
            return outcome
        finally:
            history.lock.release()


def _log_changes(pool: Pool, changes: Sequence[StatusChange]) -> None:
    for change in changes:
        job = change.job
        worrying = job.status == "Failed" or (job.terminal and job.failed > 0)
        level = logging.WARNING if worrying else logging.INFO
        log.log(
            level,
            "import job status changed",
            extra={
                "fields": {
                    "event": "job_status_changed",
                    "user_pool_id": pool.id,
                    "job_id": job.job_id,
                    "job_name": job.name,
                    "old_status": change.old_status or "",
                    "new_status": job.status,
                    "imported": job.imported,
                    "skipped": job.skipped,
                    "failed": job.failed,
                    "completion_message": job.completion_message or "",
                }
            },
        )


def _not_enabled_message(pool: Pool) -> str:
    primary = region_from_pool_id(pool.id)
    where = f"; its primary region is {primary}" if primary and primary != pool.region else ""
    return f"import jobs cannot be listed in {pool.region}, a replica region of the pool{where}"


def log_result_change(state: PoolState, result: PoolResult) -> None:
    """Log a pool that starts failing, fails otherwise, or works again."""
    with state.log_lock:
        previous, first = state.logged_error, not state.logged
        state.logged_error, state.logged = result.error_code, True
    if result.error_code == previous and not first:
        return
    fields = {"user_pool_id": result.pool.id}
    if result.error_code is not None:
        fields |= {"error_code": result.error_code, "error": result.error_message or ""}
        log.warning("collecting the pool failed", extra={"fields": fields})
    elif not first:
        log.info("collecting the pool works again", extra={"fields": fields})
