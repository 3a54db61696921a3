"""One pool's life in the exporter: its history, read through its stored file and scans, the
result a collection reports, the log lines its changes make, and what goes when it is dropped.

A `TrackedPool` owns all of that privately and is used through a few verbs: `collect`,
`not_collected`, `count_timeout`, `follow` and `drop`. `PoolTracker` builds them, and is
the one place that knows what a collection needs beyond the pool: settings and clients (which
a reload changes), metrics, the history store, the budget a pool's calls take, and clocks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from exporter.cognito.clients import ClientFactory, ClientKey
from exporter.cognito.errors import error_code
from exporter.cognito.jobs import Job, PoolJobs
from exporter.collect.attempts import (
    AccountRegion,
    CallScope,
    calling_for,
    failure_counted_by_attempt,
)
from exporter.collect.history import PoolHistory, ScanOutcome, StatusChange, recent_jobs
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import DeadlineExceeded
from exporter.collect.reading import jobs_per_page, page_bound
from exporter.collect.reasons_pool import PoolReasons, ReasonsView
from exporter.collect.reasons_reader import ReadRequest, ReasonsReader
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
    duration: float
    error_code: str | None = None
    error_message: str | None = None
    outcome: ScanOutcome | None = None
    recent_jobs: tuple[Job, ...] = ()
    reasons: ReasonsView | None = None

    @property
    def success(self) -> bool:
        return self.error_code is None

    @classmethod
    def timed_out(cls, pool: Pool, duration: float) -> PoolResult:
        return cls(pool, duration, error_code=TIMEOUT, error_message=NOT_COLLECTED)


def _unresolved_account(pool: Pool) -> AccountRegion:
    return AccountRegion.of(None, pool.credentials, pool.region)


@dataclass(frozen=True)
class CollectSettings:
    """What a reload changes for every pool: scrape settings and the clients."""

    scrape: Scrape
    clients: ClientFactory


@dataclass(frozen=True)
class _Shared:
    """What every tracked pool of the process collects with."""

    settings: Callable[[], CollectSettings]
    metrics: ExporterMetrics
    store: HistoryStore | None
    account_key: Callable[[Pool], AccountRegion]
    on_not_enabled: Callable[[Pool], bool]
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    reasons_reader: ReasonsReader | None


class PoolTracker:
    """Builds the tracked pools of the process, all with the settings in force."""

    def __init__(
        self,
        scrape: Scrape,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        *,
        account_key: Callable[[Pool], AccountRegion] = _unresolved_account,
        on_not_enabled: Callable[[Pool], bool] = lambda pool: False,
        store: HistoryStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        reasons_reader: ReasonsReader | None = None,
    ) -> None:
        self._settings = CollectSettings(scrape, clients)
        self._shared = _Shared(
            lambda: self._settings,
            metrics,
            store,
            account_key,
            on_not_enabled,
            clock,
            wall_clock,
            reasons_reader,
        )

    def configure(self, scrape: Scrape, clients: ClientFactory) -> None:
        """A reload's settings and clients, for every collection that starts from now on."""
        self._settings = CollectSettings(scrape, clients)

    def track(self, pool: Pool, *, listed: bool = True) -> TrackedPool:
        """A pool to collect: `listed` ones count their errors under their id and keep their
        history in the store; the others (probed only) do neither."""
        return TrackedPool(pool, self._shared, listed=listed)


class TrackedPool:
    """One pool, from the first time it is collected until it is dropped."""

    def __init__(self, pool: Pool, shared: _Shared, *, listed: bool) -> None:
        self._pool = pool
        self._shared = shared
        self._label = pool.id if listed else UNLISTED_POOL_LABEL
        self._store = shared.store if listed else None
        scrape = shared.settings().scrape
        self._history = PoolHistory(pool.id, scrape.max_jobs_per_pool, scrape.full_resync_interval)
        # one scan at a time; a scrape that cannot have it by its deadline reports a timeout
        self._scanning = threading.Lock()
        self._stored_history_read = False
        # a save and the removal of the file when the pool goes, one after the other
        self._storing = threading.Lock()
        # what was last logged, timed out, dropped: read and written by any scrape's thread
        self._lock = threading.Lock()
        self._logged_error: str | None = None
        self._logged = False
        self._timed_out_last = False
        self._dropped = False
        self._reasons = PoolReasons()

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def timed_out_last(self) -> bool:
        """Whether the last collection ran out of time (such pools go last)."""
        with self._lock:
            return self._timed_out_last

    def follow(self, pool: Pool) -> None:
        """The same pool as configured by a reload (name, labels, paging), from now on."""
        self._pool = pool

    def collect(self, deadline: float) -> PoolResult:
        """The pool's result by `deadline`; any failure is this pool's alone."""
        shared = self._shared
        settings = shared.settings()
        pool = self._pool
        started = shared.clock()
        scope = CallScope(pool.id, shared.account_key(pool), deadline, self._label)
        discovery_dropped = False
        try:
            outcome = self._scan(pool, settings, scope)
        except Exception as error:
            code = error_code(error)
            # timeouts are counted where the scrape reports them, once per pool and collection
            if code != TIMEOUT and not failure_counted_by_attempt(scope):
                shared.metrics.api_errors.labels(user_pool_id=self._label, error_code=code).inc()
            message = safe_error_text(error)
            if code == NOT_ENABLED:
                message = _not_enabled_message(pool)
                # a discovered pool in a replica region is dropped, and discovery says so
                discovery_dropped = shared.on_not_enabled(pool)
            result = PoolResult(
                pool, shared.clock() - started, error_code=code, error_message=message
            )
        else:
            scrape = settings.scrape
            recent = recent_jobs(
                outcome.jobs, shared.wall_clock(), scrape.job_window, scrape.max_jobs_per_pool
            )
            result = PoolResult(
                pool,
                shared.clock() - started,
                outcome=outcome,
                recent_jobs=tuple(recent),
                reasons=self._reasons_after(pool, settings, outcome),
            )
            _log_changes(pool, outcome.changes)
            if outcome.ordering_broken:
                log.warning(
                    "import jobs are not listed newest first; reading the pool in full",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
        with self._lock:
            self._timed_out_last = result.error_code == TIMEOUT
        if self._is_dropped():
            # what this collection counted after the pool went goes too
            self._forget_series()
        elif not discovery_dropped:
            self._log_result(result)
        return result

    def not_collected(self, duration: float) -> PoolResult:
        """The result of a scrape that could not wait for this pool any longer."""
        result = PoolResult.timed_out(self._pool, duration)
        self._log_result(result)
        return result

    def count_timeout(self) -> None:
        """One collection of this pool ran out of time (a pool dropped since counts nothing)."""
        errors = self._shared.metrics.api_errors
        with self._lock:
            if not self._dropped:
                errors.labels(user_pool_id=self._label, error_code=TIMEOUT).inc()

    def drop(self) -> None:
        """The pool is no longer collected: its series, stored file and memory go. A
        collection still running finishes, and what it counts or stores goes too."""
        with self._storing:
            with self._lock:
                self._dropped = True
            if self._store is not None:
                self._store.remove(self._pool)
        self._reasons.drop()
        self._forget_series()

    def _is_dropped(self) -> bool:
        with self._lock:
            return self._dropped

    def _forget_series(self) -> None:
        if self._label != UNLISTED_POOL_LABEL:
            self._shared.metrics.forget_pool(self._label)

    def _scan(self, pool: Pool, settings: CollectSettings, scope: CallScope) -> ScanOutcome:
        clock, wall_clock = self._shared.clock, self._shared.wall_clock
        remaining = scope.deadline - clock()
        if remaining <= 0 or not self._scanning.acquire(timeout=remaining):
            raise DeadlineExceeded("the pool was still busy from an earlier scrape")
        try:
            history = self._history
            scrape = settings.scrape
            history.configure(scrape.max_jobs_per_pool, scrape.full_resync_interval)
            store = self._store
            if not self._stored_history_read:
                self._stored_history_read = True
                if store is not None:
                    store.load(
                        pool, history, clock(), wall_clock(), restore_reasons=self._reasons.restore
                    )
            reader = PoolJobs(settings.clients.client(ClientKey.of(pool)), pool.id, pool.page_size)
            denied_before = history.describe_denied
            with calling_for(scope):
                outcome = history.scan(
                    reader,
                    page_bound(pool.max_listed_jobs, pool.page_size),
                    jobs_per_page(pool.page_size),
                    clock(),  # schedules full reads: a wall clock stepped back stops none
                    max_listed_jobs=pool.max_listed_jobs,
                )
            if history.describe_denied and not denied_before:
                log.warning(
                    "DescribeUserImportJob is not allowed: active jobs deep in the list are "
                    "paged to instead (allow cognito-idp:DescribeUserImportJob to save the calls)",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
            if store is not None:
                with self._storing:
                    if not self._is_dropped():
                        reasons = self._reasons.stored() if pool.reasons else None
                        store.save(pool, history, clock(), wall_clock(), reasons=reasons)
            return outcome
        finally:
            self._scanning.release()

    def _reasons_after(
        self, pool: Pool, settings: CollectSettings, outcome: ScanOutcome
    ) -> ReasonsView | None:
        """The pool's reasons after a scan; the jobs it finished, offered to the reader
        (never waited for: their reasons show in a later scrape)."""
        reader = self._shared.reasons_reader
        if reader is None:
            return None
        reasons = self._reasons
        reasons.keep_only(job.job_id for job in outcome.jobs)
        if pool.reasons and self._label != UNLISTED_POOL_LABEL:
            finished = [change.job for change in outcome.changes if change.job.terminal]
            wanted = reasons.wanted((*finished, *outcome.jobs), settings)
            account = self._shared.account_key(pool)
            reader.submit(
                ReadRequest(pool, job, reasons, settings.clients, settings, account, self._label)
                for job in wanted
            )
        # the settings object is new at each reload: a refusal holds until the next one
        return reasons.view(pool.reasons, settings)

    def _log_result(self, result: PoolResult) -> None:
        """Log a pool that starts failing, fails otherwise, or works again."""
        with self._lock:
            previous, first = self._logged_error, not self._logged
            self._logged_error, self._logged = result.error_code, True
        if result.error_code == previous and not first:
            return
        fields = {"user_pool_id": result.pool.id}
        if result.error_code is not None:
            fields |= {"error_code": result.error_code, "error": result.error_message or ""}
            log.warning("collecting the pool failed", extra={"fields": fields})
        elif not first:
            log.info("collecting the pool works again", extra={"fields": fields})


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
