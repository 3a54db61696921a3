"""One pool's life in the exporter: its history, read through its stored file and scans, the
result a collection reports, the log lines its changes make, and what goes when it is dropped.

A `TrackedPool` owns all of that privately and is used through a few verbs: `collect` (a
refresh), `latest` (what is known without a call), `standing` (what its schedule needs),
`follow` and `drop`. A refresh whose turn does not come before its deadline (no slot in the
budget, the pool busy) is no failure: the pool keeps serving what it last knew.
`PoolTracker` builds them, and is the one place that knows what a collection needs beyond
the pool: settings and clients (which a reload changes), metrics, the history store, the
budget a pool's calls take, the full re-read interval in force, and clocks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from exporter.cognito.clients import ClientFactory, ClientKey
from exporter.cognito.errors import error_code
from exporter.cognito.jobs import PoolJobs
from exporter.collect.attempts import (
    AccountRegion,
    CallScope,
    calling_for,
    failure_counted_by_attempt,
)
from exporter.collect.history import PoolHistory, ScanOutcome, StatusChange
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import Postponed
from exporter.collect.reading import jobs_per_page, page_bound
from exporter.collect.reasons_pool import PoolReasons
from exporter.collect.reasons_reader import PoolToRead, ReasonsReader
from exporter.collect.schedule import Standing
from exporter.collect.served import TIMEOUT, PoolResult, recent_jobs
from exporter.collect.storage import HistoryStore
from exporter.config.model import Pool
from exporter.config.schema import Scrape, region_from_pool_id
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

# errors of pools probed without being listed share one label value, so probing cannot grow
# the exporter's own series without bound
UNLISTED_POOL_LABEL = ""
# what a replica region of a multi-region pool answers
NOT_ENABLED = "OperationNotEnabled"


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
    full_interval: Callable[[Pool], float]
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
        full_interval: Callable[[AccountRegion], float] | None = None,
        store: HistoryStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        reasons_reader: ReasonsReader | None = None,
    ) -> None:
        self._settings = CollectSettings(scrape, clients)

        def pool_full_interval(pool: Pool) -> float:
            if full_interval is None:
                return self._settings.scrape.full_resync_interval
            return full_interval(account_key(pool))

        self._shared = _Shared(
            lambda: self._settings,
            metrics,
            store,
            account_key,
            on_not_enabled,
            pool_full_interval,
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
        self._since = shared.clock()
        # one scan at a time; a scrape that cannot have it by its deadline is postponed
        self._scanning = threading.Lock()
        # the stored file is read once, before the pool's first scan or standing
        self._restoring = threading.Lock()
        self._restored = False
        # a save and the removal of the file when the pool goes, one after the other
        self._storing = threading.Lock()
        # what was last logged, served, attempted, dropped: read and written by any thread
        self._lock = threading.Lock()
        self._logged_error: str | None = None
        self._logged = False
        self._latest: PoolResult | None = None
        self._attempted_at: float | None = None
        self._calls = 1
        self._dropped = False
        self._reasons = PoolReasons(pool.reasons)
        self._reasons_reader = shared.reasons_reader if listed else None

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def timed_out_last(self) -> bool:
        """Whether the last refresh ran out of time (such pools go last)."""
        with self._lock:
            latest = self._latest
        return latest is not None and latest.error_code == TIMEOUT

    def latest(self) -> PoolResult:
        """What is known of the pool without a call: its last refresh's result."""
        self._restore_once()
        with self._lock:
            latest = self._latest
        return self._with_reasons(latest if latest is not None else PoolResult(self._pool, 0.0))

    def standing(self) -> Standing:
        self._restore_once()
        history = self._history
        with self._lock:
            attempted_at, calls = self._attempted_at, self._calls
        return Standing(
            account=self._shared.account_key(self._pool),
            since=self._since,
            attempted_at=attempted_at,
            active=history.active,
            last_change=history.last_change,
            calls=calls,
            full_calls=page_bound(history.job_count, self._pool.page_size),
        )

    def follow(self, pool: Pool) -> None:
        """The same pool as configured by a reload (name, labels, paging), from now on."""
        self._pool = pool
        self._reasons.turn(pool.reasons)

    def collect(self, deadline: float, *, background: bool = False) -> PoolResult:
        """Refresh the pool by `deadline`; any failure is this pool's alone. A refresh whose
        turn does not come in time, or that another caller made meanwhile, gives the latest.
        `background` refreshes give way to scrapes in the budget."""
        shared = self._shared
        settings = shared.settings()
        pool = self._pool
        asked = started = shared.clock()
        scope = CallScope(
            pool.id, shared.account_key(pool), deadline, self._label, yielding=background
        )
        discovery_dropped = False
        try:
            outcome = self._scan(pool, settings, scope, asked)
        except Postponed:
            return self.latest()
        except Exception as error:
            code = error_code(error)
            if not failure_counted_by_attempt(scope):
                shared.metrics.api_errors.labels(user_pool_id=self._label, error_code=code).inc()
            message = safe_error_text(error)
            if code == NOT_ENABLED:
                message = _not_enabled_message(pool)
                # a discovered pool in a replica region is dropped, and discovery says so
                discovery_dropped = shared.on_not_enabled(pool)
            with self._lock:
                known = self._latest
            result = PoolResult(
                pool,
                shared.clock() - started,
                error_code=code,
                error_message=message,
                outcome=None if known is None else known.outcome,
                recent_jobs=() if known is None else known.recent_jobs,
                refreshed_at=None if known is None else known.refreshed_at,
            )
        else:
            if outcome is None:
                return self.latest()
            result = self._succeeded(outcome, shared.clock() - started, shared.wall_clock())
            self._offer_reasons(pool, settings, outcome)
            if not outcome.full:
                with self._lock:
                    self._calls = max(1, outcome.pages + outcome.describes)
            _log_changes(pool, outcome.changes)
            if outcome.ordering_broken:
                log.warning(
                    "import jobs are not listed newest first; reading the pool in full",
                    extra={"fields": {"user_pool_id": pool.id}},
                )
        with self._lock:
            self._latest = result
            self._attempted_at = shared.clock()
        if self._is_dropped():
            # what this collection counted after the pool went goes too
            self._forget_series()
        elif not discovery_dropped:
            self._log_result(result)
        return self._with_reasons(result)

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

    def _succeeded(self, outcome: ScanOutcome, duration: float, wall_now: float) -> PoolResult:
        scrape = self._shared.settings().scrape
        recent = recent_jobs(outcome.jobs, wall_now, scrape.job_window, scrape.max_jobs_per_pool)
        return PoolResult(
            self._pool, duration, outcome=outcome, recent_jobs=tuple(recent), refreshed_at=wall_now
        )

    def _restore_once(self) -> None:
        """The stored history, read before anything else is asked of the pool: a restart
        serves it and keeps its schedule."""
        with self._restoring:
            if self._restored:
                return
            self._restored = True
            store, clock, wall_clock = self._store, self._shared.clock, self._shared.wall_clock
            now, wall_now = clock(), wall_clock()
            if store is None or not store.load(
                self._pool, self._history, now, wall_now, self._reasons.restore
            ):
                return
            last_scan, view = self._history.last_scan, self._history.view()
            if last_scan is None or view is None:
                return
            refreshed = self._succeeded(view, 0.0, wall_now - (now - last_scan))
        with self._lock:
            self._latest, self._attempted_at = refreshed, min(last_scan, now)

    def _scan(
        self, pool: Pool, settings: CollectSettings, scope: CallScope, asked: float
    ) -> ScanOutcome | None:
        """The scan, or None when another caller refreshed the pool while this one waited."""
        clock, wall_clock = self._shared.clock, self._shared.wall_clock
        self._restore_once()
        remaining = scope.deadline - clock()
        if remaining <= 0 or not self._scanning.acquire(timeout=remaining):
            raise Postponed("the pool was still busy with another refresh")
        try:
            with self._lock:
                attempted_at = self._attempted_at
            if attempted_at is not None and attempted_at >= asked:
                return None
            history = self._history
            scrape = settings.scrape
            history.configure(scrape.max_jobs_per_pool, self._shared.full_interval(pool))
            store = self._store
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
                        store.save(pool, history, clock(), wall_clock(), reasons)
            return outcome
        finally:
            self._scanning.release()

    def _offer_reasons(self, pool: Pool, settings: CollectSettings, outcome: ScanOutcome) -> None:
        """Finished jobs offered to the reader (never waited for: a later scrape shows them)."""
        self._reasons.keep_only(job.job_id for job in outcome.jobs)
        if (reader := self._reasons_reader) is not None and pool.reasons:
            account = self._shared.account_key(pool)
            read = PoolToRead(pool, self._reasons, settings.clients, settings, account, self._label)
            finished = [change.job for change in outcome.changes if change.job.terminal]
            reader.offer(read, (*finished, *outcome.jobs))

    def _with_reasons(self, result: PoolResult) -> PoolResult:
        """`result` with the reasons read so far; a refusal holds until a reload (new settings)."""
        if self._reasons_reader is None or result.outcome is None:
            return result
        return replace(result, reasons=self._reasons.view(self._shared.settings()))

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
