"""Every metric the exporter serves: name, help, labels and kind, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "cognito_user_import"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    help: str
    labels: tuple[str, ...]
    kind: Literal["gauge", "counter"] = "gauge"
    # samples may carry labels beyond `labels` (a pool's own, from the configuration)
    open_labels: bool = False

    def family(self, help_suffix: str = "") -> Metric:
        """An empty family of this metric, for a collector to fill."""
        documentation = self.help + help_suffix
        if self.kind == "counter":
            return CounterMetricFamily(self.name, documentation, labels=self.labels)
        if self.open_labels:
            return GaugeMetricFamily(self.name, documentation)
        return GaugeMetricFamily(self.name, documentation, labels=self.labels)

    def instrument(self, registry: CollectorRegistry) -> Counter | Gauge:
        """The process-long metric of this spec, registered."""
        kind = Counter if self.kind == "counter" else Gauge
        return kind(self.name, self.help, self.labels, registry=registry)


JOBS = MetricSpec(
    f"{PREFIX}_jobs",
    "Import jobs the user pool holds, by status.",
    ("user_pool_id", "status"),
)
USERS = MetricSpec(
    f"{PREFIX}_users",
    "Users imported, skipped or failed, summed over the pool's import jobs; "
    "jobs that leave the list are not subtracted.",
    ("user_pool_id", "outcome"),
    kind="counter",
)
JOB_INFO = MetricSpec(
    f"{PREFIX}_job_info",
    "Recent or active import job, with its name and status (value 1).",
    ("user_pool_id", "job_id", "job_name", "status"),
)
JOB_USERS = MetricSpec(
    f"{PREFIX}_job_users",
    "Users imported, skipped or failed by a recent or active import job.",
    ("user_pool_id", "job_id", "outcome"),
)
JOB_CREATED = MetricSpec(
    f"{PREFIX}_job_created_timestamp_seconds",
    "When a recent or active import job was created, in seconds since the epoch.",
    ("user_pool_id", "job_id"),
)
JOB_STARTED = MetricSpec(
    f"{PREFIX}_job_started_timestamp_seconds",
    "When a recent or active import job was started, in seconds since the epoch.",
    ("user_pool_id", "job_id"),
)
JOB_COMPLETED = MetricSpec(
    f"{PREFIX}_job_completed_timestamp_seconds",
    "When a recent import job completed, in seconds since the epoch.",
    ("user_pool_id", "job_id"),
)
JOB_REASON_USERS = MetricSpec(
    f"{PREFIX}_job_reason_users",
    "Users skipped or failed by a recent import job, by the reason its log gives "
    "(pools with reasons on, once the job's log was read).",
    ("user_pool_id", "job_id", "outcome", "reason"),
)
REASON_USERS = MetricSpec(
    f"{PREFIX}_reason_users",
    "Users skipped or failed, by the reason their jobs' logs give, summed over the finished "
    "jobs whose logs were read (pools with reasons on).",
    ("user_pool_id", "outcome", "reason"),
    kind="counter",
)
REASONS_STATE = MetricSpec(
    f"{PREFIX}_reasons_state",
    "Whether the reasons for skipped and failed users are read from the pool's job logs: "
    "1 for the pool's state (reading, off, no_log_role: its latest such job writes no log, "
    "denied: logs:FilterLogEvents refused, until a reload), 0 for the others.",
    ("user_pool_id", "state"),
)
REASONS_WAITING = MetricSpec(
    f"{PREFIX}_reasons_waiting_jobs",
    "Finished jobs of the pool whose logs are waiting to be read for their reasons.",
    ("user_pool_id",),
)
POOL_INFO = MetricSpec(
    f"{PREFIX}_pool_info",
    "A collected user pool, with its display name, region and configured labels (value 1).",
    ("user_pool_id", "user_pool_name", "region"),
    open_labels=True,
)
SCRAPE_SUCCESS = MetricSpec(
    f"{PREFIX}_scrape_success",
    "Whether the last collection of the pool's import jobs succeeded (1) or not (0); a pool "
    "whose turn has not come keeps its last collection's.",
    ("user_pool_id",),
)
LAST_SUCCESS = MetricSpec(
    f"{PREFIX}_scrape_last_success_timestamp_seconds",
    "When the pool's import jobs were last collected successfully, in seconds since the "
    "epoch; every value of the pool is as of then.",
    ("user_pool_id",),
)
SCRAPE_DURATION = MetricSpec(
    f"{PREFIX}_scrape_duration_seconds",
    "How long the last collection of the pool's import jobs took.",
    ("user_pool_id",),
)
API_REQUESTS = MetricSpec(
    f"{PREFIX}_api_requests",
    "HTTP requests sent to the Cognito API, retries included, by operation.",
    ("operation",),
    kind="counter",
)
API_ERRORS = MetricSpec(
    f"{PREFIX}_api_errors",
    "Errors met while collecting a pool, by error code "
    "(throttling, access, timeouts, bad answers).",
    ("user_pool_id", "error_code"),
    kind="counter",
)
BUILD_INFO = MetricSpec(
    f"{PREFIX}_exporter_build_info",
    "The exporter's version (value 1).",
    ("version",),
)
RELOAD_SUCCESS = MetricSpec(
    f"{PREFIX}_config_last_reload_successful",
    "Whether the last configuration reload succeeded (1) or not (0).",
    (),
)
RELOAD_TIMESTAMP = MetricSpec(
    f"{PREFIX}_config_last_reload_success_timestamp_seconds",
    "When the configuration was last loaded successfully, in seconds since the epoch.",
    (),
)

RELOADS = MetricSpec(
    f"{PREFIX}_config_reloads",
    "Configuration loads and reloads, by outcome (success or failure).",
    ("outcome",),
    kind="counter",
)

DISCOVERY_SUCCESS = MetricSpec(
    f"{PREFIX}_discovery_success",
    "Whether the last pool discovery in the region succeeded (1) or not (0).",
    ("region",),
)
DISCOVERY_POOLS = MetricSpec(
    f"{PREFIX}_discovery_pools",
    "Pools the last good discovery found in the region, by state: collected, or "
    "not_enabled (the region answers OperationNotEnabled, as a replica region does).",
    ("region", "state"),
)
API_QUOTA = MetricSpec(
    f"{PREFIX}_api_quota_requests_per_second",
    "Requests a second Cognito enforces for the account and region in the API category "
    "(GetProvisionedLimit).",
    ("account_id", "region", "category"),
)
API_ACCOUNT_REQUESTS = MetricSpec(
    f"{PREFIX}_api_account_requests",
    "HTTP requests for import jobs sent against the account and region's quota, retries included.",
    ("account_id", "region"),
    kind="counter",
)
API_ACCOUNT_THROTTLES = MetricSpec(
    f"{PREFIX}_api_account_throttles",
    "Requests for import jobs in the account and region that Cognito throttled.",
    ("account_id", "region"),
    kind="counter",
)
API_BUDGET = MetricSpec(
    f"{PREFIX}_api_budget_requests_per_second",
    "Requests a second the exporter allows itself for import jobs in the account and "
    "region, shared by every credential set of the account.",
    ("account_id", "region"),
)
REFRESH_BEHIND = MetricSpec(
    f"{PREFIX}_refresh_behind_seconds",
    "How far the account and region's most overdue pool is past scrape.max_staleness "
    "(0 while every pool is within it).",
    ("account_id", "region"),
)
FULL_RESYNC_INTERVAL = MetricSpec(
    f"{PREFIX}_full_resync_interval_seconds",
    "The interval of full re-reads in force in the account and region: "
    "scrape.full_resync_interval, or longer when the budget cannot afford it.",
    ("account_id", "region"),
)
TLS_CERTIFICATE_NOT_AFTER = MetricSpec(
    f"{PREFIX}_web_tls_certificate_not_after_timestamp_seconds",
    "When the TLS certificate the exporter serves expires, in seconds since the epoch "
    "(absent without TLS); renewed files are served from the next connection.",
    (),
)

POOL_FAMILIES = (
    JOBS,
    USERS,
    JOB_INFO,
    JOB_USERS,
    JOB_CREATED,
    JOB_STARTED,
    JOB_COMPLETED,
    JOB_REASON_USERS,
    REASON_USERS,
    REASONS_STATE,
    REASONS_WAITING,
    POOL_INFO,
    SCRAPE_SUCCESS,
    LAST_SUCCESS,
    SCRAPE_DURATION,
)


class ExporterMetrics:
    """The exporter's own instrumented metrics; they live as long as the process."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.api_requests = _counter(API_REQUESTS, registry)
        self.api_errors = _counter(API_ERRORS, registry)
        _gauge(BUILD_INFO, registry).labels(version=version).set(1)
        self.reload_success = _gauge(RELOAD_SUCCESS, registry)
        self.reload_timestamp = _gauge(RELOAD_TIMESTAMP, registry)
        self.reloads = _counter(RELOADS, registry)
        self.discovery_success = _gauge(DISCOVERY_SUCCESS, registry)
        self.discovery_pools = _gauge(DISCOVERY_POOLS, registry)
        self.api_quota = _gauge(API_QUOTA, registry)
        self.api_budget = _gauge(API_BUDGET, registry)
        self.api_account_requests = _counter(API_ACCOUNT_REQUESTS, registry)
        self.api_account_throttles = _counter(API_ACCOUNT_THROTTLES, registry)
        self.refresh_behind = _gauge(REFRESH_BEHIND, registry)
        self.full_resync_interval = _gauge(FULL_RESYNC_INTERVAL, registry)

    def forget_pool(self, pool_id: str) -> None:
        """Remove the series of a pool no longer collected."""
        codes = {
            sample.labels["error_code"]
            for family in self.api_errors.collect()
            for sample in family.samples
            if sample.labels.get("user_pool_id") == pool_id
        }
        for code in codes:
            self.api_errors.remove(pool_id, code)


def _counter(spec: MetricSpec, registry: CollectorRegistry) -> Counter:
    metric = spec.instrument(registry)
    assert isinstance(metric, Counter), spec.name
    return metric


def _gauge(spec: MetricSpec, registry: CollectorRegistry) -> Gauge:
    metric = spec.instrument(registry)
    assert isinstance(metric, Gauge), spec.name
    return metric
