"""Every metric the exporter serves: name, help, labels and type, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

PREFIX = "cognito_user_import"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    help: str
    labels: tuple[str, ...]


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
POOL_INFO = MetricSpec(
    f"{PREFIX}_pool_info",
    "A collected user pool, with its display name, region and configured labels (value 1).",
    ("user_pool_id", "user_pool_name", "region"),
)
SCRAPE_SUCCESS = MetricSpec(
    f"{PREFIX}_scrape_success",
    "Whether the last collection of the pool's import jobs succeeded (1) or not (0).",
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
)
API_ERRORS = MetricSpec(
    f"{PREFIX}_api_errors",
    "Errors met while collecting a pool, by error code "
    "(throttling, access, timeouts, bad answers).",
    ("user_pool_id", "error_code"),
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
)

DISCOVERY_SUCCESS = MetricSpec(
    f"{PREFIX}_discovery_success",
    "Whether the last pool discovery in the region succeeded (1) or not (0).",
    ("region",),
)
DISCOVERY_POOLS = MetricSpec(
    f"{PREFIX}_discovery_pools",
    "Pools the last good discovery found in the region.",
    ("region",),
)

POOL_FAMILIES = (
    JOBS,
    USERS,
    JOB_INFO,
    JOB_USERS,
    JOB_CREATED,
    JOB_STARTED,
    JOB_COMPLETED,
    POOL_INFO,
    SCRAPE_SUCCESS,
    SCRAPE_DURATION,
)


class ExporterMetrics:
    """The exporter's own instrumented metrics; they live as long as the process."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.api_requests = Counter(
            API_REQUESTS.name, API_REQUESTS.help, API_REQUESTS.labels, registry=registry
        )
        self.api_errors = Counter(
            API_ERRORS.name, API_ERRORS.help, API_ERRORS.labels, registry=registry
        )
        build_info = Gauge(BUILD_INFO.name, BUILD_INFO.help, BUILD_INFO.labels, registry=registry)
        build_info.labels(version=version).set(1)
        self.reload_success = Gauge(RELOAD_SUCCESS.name, RELOAD_SUCCESS.help, registry=registry)
        self.reload_timestamp = Gauge(
            RELOAD_TIMESTAMP.name, RELOAD_TIMESTAMP.help, registry=registry
        )
        self.reloads = Counter(RELOADS.name, RELOADS.help, RELOADS.labels, registry=registry)
        self.discovery_success = Gauge(
            DISCOVERY_SUCCESS.name,
            DISCOVERY_SUCCESS.help,
            DISCOVERY_SUCCESS.labels,
            registry=registry,
        )
        self.discovery_pools = Gauge(
            DISCOVERY_POOLS.name, DISCOVERY_POOLS.help, DISCOVERY_POOLS.labels, registry=registry
        )
