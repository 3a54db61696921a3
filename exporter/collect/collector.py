"""The Prometheus collector: a collection per scrape, every pool's last known state as metric
families.

Registering it makes no AWS call (`describe()` answers from the metric table). The scrape's
deadline reaches `collect()` through `scrape_deadline`, which the HTTP layer sets from
Prometheus' scrape-timeout header.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.cognito.jobs import KNOWN_STATUSES, Job
from exporter.collect.history import OUTCOMES
from exporter.collect.metrics import (
    JOB_COMPLETED,
    JOB_CREATED,
    JOB_INFO,
    JOB_REASON_USERS,
    JOB_STARTED,
    JOB_USERS,
    JOBS,
    LAST_SUCCESS,
    POOL_FAMILIES,
    POOL_INFO,
    REASON_USERS,
    REASONS_STATE,
    REASONS_WAITING,
    SCRAPE_DURATION,
    SCRAPE_SUCCESS,
    USERS,
    MetricSpec,
)
from exporter.collect.reasons import REASONS, ROW_OUTCOMES
from exporter.collect.reasons_pool import OFF, STATES, ReasonsView
from exporter.collect.scraper import Scraper
from exporter.collect.served import PoolResult


@dataclass
class ScrapeTiming:
    """A scrape's deadline and arrival (time.monotonic), and when its collection was done."""

    deadline: float
    arrived: float
    collected: float | None = None


_scrape: contextvars.ContextVar[ScrapeTiming | None] = contextvars.ContextVar(
    "scrape_deadline", default=None
)


@contextlib.contextmanager
def scrape_deadline(deadline: float, arrived: float) -> Iterator[ScrapeTiming]:
    """Collections made in this context are for a scrape that arrived at `arrived` and must
    finish by `deadline` (both time.monotonic); the timing yielded says when it was done."""
    timing = ScrapeTiming(deadline, arrived)
    token = _scrape.set(timing)
    try:
        yield timing
    finally:
        _scrape.reset(token)


class RenderReserve:
    """Time kept back from a scrape's collection for building and writing its answer: twice
    the longest of the last few answers (an answer can take half as long again as the one
    before on a busy or drifting machine; measured in CI), at most half the budget."""

    def __init__(self, kept: int = 5) -> None:
        self._recent: deque[float] = deque(maxlen=kept)

    def observe(self, seconds: float) -> None:
        self._recent.append(seconds)

    def collection_deadline(self, deadline: float, arrived: float) -> float:
        reserve = 2.0 * max(self._recent, default=0.0)
        return deadline - min(reserve, (deadline - arrived) / 2)


class ImportJobsCollector(Collector):
    def __init__(
        self,
        current_scraper: Callable[[], Scraper],
        default_timeout: Callable[[], float],
        cache_ttl: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._current_scraper = current_scraper
        self._default_timeout = default_timeout
        self._cache_ttl = cache_ttl
        self._clock = clock

    def describe(self) -> Iterable[Metric]:
        return [spec.family() for spec in POOL_FAMILIES]

    def collect(self) -> Iterable[Metric]:
        scrape = _scrape.get()
        if scrape is None:
            now = self._clock()
            scrape = ScrapeTiming(now + self._default_timeout(), now)
        snapshot = self._current_scraper().collect(scrape.deadline, scrape.arrived)
        scrape.collected = self._clock()
        return families(snapshot.results, self._help_suffix())

    def _help_suffix(self) -> str:
        ttl = self._cache_ttl()
        return f" Served from a cache up to {ttl:g}s old." if ttl > 0 else ""


def families(results: Iterable[PoolResult], help_suffix: str = "") -> list[Metric]:
    """The pool families, filled with `results`."""
    built = {spec.name: spec.family(help_suffix) for spec in POOL_FAMILIES}
    for result in results:
        _add_pool(built, result)
    return list(built.values())


def _add_pool(built: dict[str, Metric], result: PoolResult) -> None:
    pool = result.pool
    info_labels = {"user_pool_id": pool.id, "user_pool_name": pool.name, "region": pool.region}
    info_labels.update(pool.labels)
    built[POOL_INFO.name].add_sample(POOL_INFO.name, info_labels, 1.0)
    if not result.attempted:
        return
    _gauge(built, SCRAPE_SUCCESS).add_metric([pool.id], 1.0 if result.success else 0.0)
    _gauge(built, SCRAPE_DURATION).add_metric([pool.id], result.duration)
    if result.refreshed_at is not None:
        _gauge(built, LAST_SUCCESS).add_metric([pool.id], result.refreshed_at)
    # what the last refresh that succeeded found, also while later ones fail
    outcome = result.outcome
    if outcome is None:
        return
    statuses = dict.fromkeys(KNOWN_STATUSES, 0) | outcome.statuses
    extra = sorted(set(statuses) - set(KNOWN_STATUSES))
    for status in (*KNOWN_STATUSES, *extra):
        _gauge(built, JOBS).add_metric([pool.id, status], float(statuses[status]))
    users = built[USERS.name]
    assert isinstance(users, CounterMetricFamily)
    for name in OUTCOMES:
        users.add_metric([pool.id, name], float(outcome.users_total[name]))
    for job in result.recent_jobs:
        _add_job(built, pool.id, job)
    if result.reasons is not None:
        _add_reasons(built, pool.id, result.reasons, result.recent_jobs)


def _add_reasons(
    built: dict[str, Metric], pool_id: str, reasons: ReasonsView, recent: tuple[Job, ...]
) -> None:
    for state in STATES:
        _gauge(built, REASONS_STATE).add_metric([pool_id, state], float(state == reasons.state))
    if reasons.state == OFF:
        return
    _gauge(built, REASONS_WAITING).add_metric([pool_id], float(reasons.waiting))
    totals = built[REASON_USERS.name]
    assert isinstance(totals, CounterMetricFamily)
    for outcome in ROW_OUTCOMES:
        for reason in REASONS:
            users = reasons.totals.get((outcome, reason), 0)
            totals.add_metric([pool_id, outcome, reason], float(users))
    job_reasons = _gauge(built, JOB_REASON_USERS)
    for job in recent:
        read = reasons.jobs.get(job.job_id)
        if read is None:
            continue
        for (outcome, reason), users in sorted(read.counts.items()):
            job_reasons.add_metric([pool_id, job.job_id, outcome, reason], float(users))


def _add_job(built: dict[str, Metric], pool_id: str, job: Job) -> None:
    _gauge(built, JOB_INFO).add_metric([pool_id, job.job_id, job.name, job.status], 1.0)
    job_users = _gauge(built, JOB_USERS)
    job_users.add_metric([pool_id, job.job_id, "imported"], float(job.imported))
    job_users.add_metric([pool_id, job.job_id, "skipped"], float(job.skipped))
    job_users.add_metric([pool_id, job.job_id, "failed"], float(job.failed))
    for spec, value in (
        (JOB_CREATED, job.created),
        (JOB_STARTED, job.started),
        (JOB_COMPLETED, job.completed),
    ):
        if value is not None:
            _gauge(built, spec).add_metric([pool_id, job.job_id], value)


def _gauge(built: dict[str, Metric], spec: MetricSpec) -> GaugeMetricFamily:
    family = built[spec.name]
    assert isinstance(family, GaugeMetricFamily)
    return family
