"""Collections through real botocore against the simulator: deadlines, sharing, isolation."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from exporter.app import Runtime
from exporter.cognito.clients import ClientFactory, ClientSettings
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.pool import PoolTracker
from exporter.collect.scraper import Scraper
from exporter.config.load import load_text
from exporter.config.model import Config
from exporter.demo.service import SimulatedCognito
from exporter.web.routes import ExporterApp
from tests.exporter_process import samples, value
from tests.simulated import assert_exact, config_yaml, populate
from tests.wsgi import call

POOLS = ("eu-west-1_Alpha1", "eu-west-1_Bravo2", "eu-west-1_Charlie3")


def config_for(endpoint: str, pools: tuple[str, ...] = POOLS, **scrape: object) -> Config:
    return load_text(config_yaml(endpoint, pools, scrape=scrape, page_size=10))


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=11)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 25, seed, active_newest=3)
    return model


def exporter(config: Config) -> tuple[Runtime, ExporterApp]:
    runtime = Runtime(lambda: config)
    runtime.apply(config)
    return runtime, ExporterApp(runtime)


def scrape(
    app: ExporterApp, headers: dict[str, str] | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, _, body = call(app, "/metrics", headers=headers)
    assert status == 200
    return samples(body.decode())


def test_steady_state_scrape_costs_one_call_per_pool(
    model: SimulatedCognito, endpoint: str
) -> None:
    _, app = exporter(config_for(endpoint))
    scrape(app)
    assert sum(model.calls_by_pool.values()) == 3 * 3
    model.reset_calls()
    parsed = scrape(app)
    assert dict(model.calls_by_pool) == dict.fromkeys(POOLS, 1)
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)


def test_changes_deep_in_history_are_exact_after_the_next_scrape(
    model: SimulatedCognito, endpoint: str
) -> None:
    _, app = exporter(config_for(endpoint))
    pool_id = POOLS[0]
    model.add_job(pool_id, name="old, still running", status="InProgress", created=1.0e9)
    scrape(app)
    oldest = model.jobs(pool_id)[-1]
    assert oldest["JobName"] == "old, still running"
    model.set_job(pool_id, str(oldest["JobId"]), status="Failed", failed=77, completed=time.time())
    model.add_job(pool_id, name="newest", status="InProgress", created=time.time(), imported=5)
    parsed = scrape(app)
    assert_exact(parsed, model, pool_id)


def test_a_slow_endpoint_keeps_the_deadline_and_a_read_that_cannot_fit_goes_on_next_time(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter(config_for(endpoint, timeout="30s"))
    model.faults.latency = 0.7
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": "2.5"}
    started = time.monotonic()
    parsed = scrape(app, headers)
    assert time.monotonic() - started < 2.3
    # three pages at 0.7 s each cannot fit in 2 s: the third is not started (its answer could
    # not come in time), nothing failed, and the pools are not read yet
    assert failed_or_read(parsed) == {}
    # the read goes on where it stopped: the last page, then the newest jobs caught up on
    parsed = scrape(app, headers)
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)
    runtime.scraper.close(wait=True)
    assert timeouts_counted(runtime) == {}


def failed_or_read(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    return {
        dict(labels)["user_pool_id"]: sample
        for (name, labels), sample in parsed.items()
        if name == "cognito_user_import_scrape_success"
    }


def timeouts_counted(runtime: Runtime) -> dict[str, float]:
    return {
        sample.labels["user_pool_id"]: sample.value
        for family in runtime.metrics.api_errors.collect()
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["error_code"] == "Timeout"
    }


def test_concurrent_scrapes_share_one_collection(model: SimulatedCognito, endpoint: str) -> None:
    _, app = exporter(config_for(endpoint))
    model.faults.latency = 0.05
    results: list[dict[tuple[str, frozenset[tuple[str, str]]], float]] = []
    threads = [threading.Thread(target=lambda: results.append(scrape(app))) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 12
    assert model.calls["ListUserImportJobs"] == 3 * 3
    for parsed in results:
        for pool_id in POOLS:
            assert_exact(parsed, model, pool_id)


def test_a_scrape_with_more_time_is_not_spoiled_by_a_shorter_one_it_joined(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter(config_for(endpoint, timeout="30s"))
    model.faults.latency = 0.7  # three pages: 2.1 s a pool
    results: dict[str, dict[tuple[str, frozenset[tuple[str, str]]], float]] = {}

    def scrape_with(name: str, header: str) -> None:
        results[name] = scrape(app, {"X-Prometheus-Scrape-Timeout-Seconds": header})

    short = threading.Thread(target=scrape_with, args=("short", "1.5"))
    short.start()
    time.sleep(0.1)  # the longer scrape arrives while the short one's collection runs
    scrape_with("long", "6")
    short.join(timeout=10)
    # the short scrape's pools were not read in its time, and nothing failed; the long one
    # read them on
    assert failed_or_read(results["short"]) == {}
    for pool_id in POOLS:
        assert_exact(results["long"], model, pool_id)
    runtime.close()


def test_cache_ttl_serves_a_recent_collection_and_says_so(
    model: SimulatedCognito, endpoint: str
) -> None:
    _, app = exporter(config_for(endpoint, cache_ttl="1h"))
    scrape(app)
    model.reset_calls()
    _, _, body = call(app, "/metrics")
    assert model.calls["ListUserImportJobs"] == 0
    assert "Served from a cache up to 3600s old." in body.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "code", "count"),
    [
        ("NotAuthorizedException", "NotAuthorized", 1),
        # retried: five attempts in all, each one counted
        ("InternalErrorException", "InternalError", 5),
        ("OperationNotEnabledException", "OperationNotEnabled", 1),
        ("TooManyRequestsException", "TooManyRequests", 5),
        ("garbage:text", "InvalidResponse", 1),
        ("garbage:empty", "InvalidResponse", 1),
        ("garbage:truncated", "InvalidResponse", 1),
        ("garbage:wrong_shape", "InvalidResponse", 1),
        ("garbage:repeat_token", "PaginationLoop", 1),
    ],
)
def test_a_failing_pool_is_isolated(
    model: SimulatedCognito, endpoint: str, fault: str, code: str, count: int
) -> None:
    _, app = exporter(config_for(endpoint))
    broken = POOLS[1]
    if fault.startswith("garbage:"):
        model.faults.garbage_pools.add(broken)
        model.faults.garbage_mode = fault.removeprefix("garbage:")  # type: ignore[assignment]
    else:
        model.faults.failing_pools[broken] = fault
    parsed = scrape(app)
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=broken) == 0
    assert (
        value(parsed, "cognito_user_import_api_errors_total", user_pool_id=broken, error_code=code)
        == count
    )
    for pool_id in (POOLS[0], POOLS[2]):
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
        assert_exact(parsed, model, pool_id)


@pytest.mark.slow
def test_every_pool_stays_exact_with_one_call_in_four_throttled(
    model: SimulatedCognito, endpoint: str
) -> None:
    _, app = exporter(config_for(endpoint))
    model.faults.throttle_rate = 0.25
    parsed = scrape(app)
    for pool_id in POOLS:
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
        assert_exact(parsed, model, pool_id)
    throttled = sum(
        count
        for (name, labels), count in parsed.items()
        if name == "cognito_user_import_api_errors_total"
        and ("error_code", "TooManyRequests") in labels
    )
    # every call past the nine pages the pools need was a throttled one, retried
    assert throttled == model.calls["ListUserImportJobs"] - 9
    assert throttled >= 1


def test_describe_makes_no_api_call(model: SimulatedCognito, endpoint: str) -> None:
    exporter(config_for(endpoint))
    assert model.calls["ListUserImportJobs"] == 0


def test_a_wall_clock_stepped_back_stops_no_full_read(
    model: SimulatedCognito, endpoint: str
) -> None:
    """What an NTP correction does to the wall clock must not move the full-read schedule."""
    config = config_for(endpoint, full_resync_interval="2s")
    wall_offset = 0.0
    monotonic_offset = 0.0

    def wall_clock() -> float:
        return time.time() + wall_offset

    def clock() -> float:
        return time.monotonic() + monotonic_offset

    metrics = ExporterMetrics(CollectorRegistry(), "test")
    tracker = PoolTracker(
        config.scrape,
        ClientFactory(config.credentials, ClientSettings()),
        metrics,
        clock=clock,
        wall_clock=wall_clock,
    )
    scraper = Scraper(config.pools, config.scrape, tracker, clock=clock)
    first = scraper.collect(clock() + 20)
    assert [result.outcome.full for result in first.results if result.outcome] == [True] * 3
    wall_offset = -86400.0
    # every pool's next full read falls within 2 s of monotonic time, wherever the wall clock is
    monotonic_offset = 2.5
    second = scraper.collect(clock() + 20)
    assert [result.outcome.full for result in second.results if result.outcome] == [True] * 3
