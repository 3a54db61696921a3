"""One tracked pool over real botocore against the simulator: what it stores, counts and logs,
and that a pool dropped while its collection runs leaves nothing behind when it ends."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.cognito.clients import ClientFactory, ClientSettings
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.pool import PoolTracker
from exporter.collect.storage import HistoryStore
from exporter.config.load import load_text
from exporter.config.model import Config
from exporter.demo.service import SimulatedCognito
from tests.simulated import config_yaml, populate
from tests.tools import wait_until

POOL = "eu-west-1_Track1"


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=3)
    populate(model, POOL, 130, 0, active_newest=2)
    return model


def tracker_for(config: Config, folder: Path) -> tuple[PoolTracker, ExporterMetrics]:
    metrics = ExporterMetrics(CollectorRegistry(), "test")
    store = HistoryStore.open(str(folder), lambda pool: None)
    clients = ClientFactory(config.credentials, ClientSettings())
    return PoolTracker(config.scrape, clients, metrics, store=store), metrics


def error_series(metrics: ExporterMetrics) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["user_pool_id"], sample.labels["error_code"]): sample.value
        for family in metrics.api_errors.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_a_collection_stores_the_history_and_a_drop_removes_it(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    config = load_text(config_yaml(endpoint, [POOL], page_size=50))
    tracker, _ = tracker_for(config, tmp_path)
    tracked = tracker.track(config.pools[0])
    result = tracked.collect(time.monotonic() + 20)
    assert result.success
    assert result.outcome is not None
    assert {k: v for k, v in result.outcome.statuses.items() if v} == model.counts(POOL).statuses
    assert [path.name for path in tmp_path.iterdir()] == [f"{POOL}.json"]
    tracked.drop()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fault", [None, "NotAuthorizedException"])
def test_a_pool_dropped_while_it_is_collected_leaves_no_file_and_no_series(
    model: SimulatedCognito, endpoint: str, tmp_path: Path, fault: str | None
) -> None:
    config = load_text(config_yaml(endpoint, [POOL], page_size=50))
    tracker, metrics = tracker_for(config, tmp_path)
    tracked = tracker.track(config.pools[0])
    # every answer slow; with a fault, the pages after the first fail, counted by the attempt
    # after the drop; without, the collection that ends after the drop would store the pool
    model.faults.slow_pools[POOL] = 0.3
    finished = threading.Event()
    results = []

    def collect() -> None:
        results.append(tracked.collect(time.monotonic() + 20))
        finished.set()

    worker = threading.Thread(target=collect)
    worker.start()
    wait_until(lambda: model.pool_call_counts().get(POOL, 0) >= 1, 10, "the first page asked")
    if fault is not None:
        model.faults.failing_pools[POOL] = fault
    tracked.drop()
    assert finished.wait(20)
    worker.join()
    assert [result.error_code for result in results] == [fault and "NotAuthorized"]
    assert error_series(metrics) == {}
    assert list(tmp_path.iterdir()) == []


def test_a_pool_that_goes_on_failing_is_logged_once_and_once_when_it_works_again(
    model: SimulatedCognito, endpoint: str, tmp_path: Path, log_stream: io.StringIO
) -> None:
    config = load_text(config_yaml(endpoint, [POOL], page_size=50))
    tracker, metrics = tracker_for(config, tmp_path)
    tracked = tracker.track(config.pools[0])
    model.faults.failing_pools[POOL] = "NotAuthorizedException"
    for _ in range(3):
        tracked.collect(time.monotonic() + 20)
    # a refresh whose turn does not come before its deadline fails nothing, logs nothing and
    # serves the last result
    calls = model.pool_call_counts()[POOL]
    postponed = tracked.collect(time.monotonic() - 1)
    assert (postponed.error_code, model.pool_call_counts()[POOL]) == ("NotAuthorized", calls)
    del model.faults.failing_pools[POOL]
    assert tracked.collect(time.monotonic() + 20).success
    lines = log_stream.getvalue().splitlines()
    assert [line.split("msg=")[1].split('"')[1] for line in lines if "collecting" in line] == [
        "collecting the pool failed",
        "collecting the pool works again",
    ]
    assert error_series(metrics) == {(POOL, "NotAuthorized"): 3.0}
