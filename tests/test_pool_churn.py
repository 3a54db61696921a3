"""Pools that come and go, by reloads or by discovery, leave nothing behind: no series, no
stored file, no memory of them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from exporter.app import Runtime
from exporter.collect.metrics import ExporterMetrics
from exporter.config.load import load_text
from exporter.config.model import Config
from exporter.demo.service import SimulatedCognito
from tests.simulated import config_yaml, populate

ROUNDS = 30
POOLS_A_ROUND = 10


@pytest.fixture
def model() -> SimulatedCognito:
    return SimulatedCognito(seed=5)


def error_series_pools(metrics: ExporterMetrics) -> set[str]:
    return {
        sample.labels["user_pool_id"]
        for family in metrics.api_errors.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def round_config(endpoint: str, model: SimulatedCognito, round_number: int) -> Config:
    """Ten pools never seen before, five of them missing on the endpoint (ResourceNotFound)."""
    pool_ids = [f"eu-west-1_r{round_number}p{index}" for index in range(POOLS_A_ROUND)]
    for seed, pool_id in enumerate(pool_ids[: POOLS_A_ROUND // 2]):
        populate(model, pool_id, 4, seed, active_newest=1)
    return load_text(config_yaml(endpoint, pool_ids))


def test_pools_reloaded_away_leave_no_series_file_or_memory(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    config = round_config(endpoint, model, 0)
    runtime = Runtime(lambda: config, storage_path=str(tmp_path))
    runtime.apply(config)
    for round_number in range(ROUNDS):
        if round_number:
            config = round_config(endpoint, model, round_number)
            runtime.apply(config)
        snapshot = runtime.scraper.collect(deadline=time.monotonic() + 30)
        assert [result.success for result in snapshot.results] == [True] * 5 + [False] * 5
    live = [pool.id for pool in config.pools]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{pool_id}.json" for pool_id in live[:5]
    )
    assert error_series_pools(runtime.metrics) == set(live[5:])
    assert [pool.id for pool in runtime.scraper.pools] == live
    assert runtime._store is not None
    assert sorted(runtime._store._written) == sorted(live[:5])
    runtime.close()


def test_a_deleted_pool_that_discovery_drops_leaves_no_series_file_or_memory(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    kept, deleted = "eu-west-1_Kept1", "eu-west-1_Gone1"
    for seed, pool_id in enumerate((kept, deleted)):
        populate(model, pool_id, 4, seed, active_newest=1)
        model.set_pool(pool_id, tags={"team": "identity"})
    discovery = "discovery: [{tags: {team: identity}, refresh_interval: 1h}]\n"
    config = load_text(config_yaml(endpoint, region="eu-west-1", extra=discovery))
    runtime = Runtime(lambda: config, storage_path=str(tmp_path))
    runtime.apply(config)
    first = runtime.scraper.collect(deadline=time.monotonic() + 30)
    assert sorted(result.pool.id for result in first.results if result.success) == sorted(
        (kept, deleted)
    )
    assert (tmp_path / f"{deleted}.json").exists()
    model.delete_pool(deleted)
    # scraped once more before discovery learns of it: the pool answers ResourceNotFound
    second = runtime.scraper.collect(deadline=time.monotonic() + 30)
    assert {result.pool.id: result.error_code for result in second.results} == {
        kept: None,
        deleted: "ResourceNotFound",
    }
    assert error_series_pools(runtime.metrics) == {deleted}
    assert runtime.discovery is not None
    runtime.discovery.refresh(everything=True)
    assert [pool.id for pool in runtime.scraper.pools] == [kept]
    assert error_series_pools(runtime.metrics) == set()
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{kept}.json"]
    assert runtime.discovery._described.keys() == {(0, kept)}
    runtime.close()


def test_a_reload_whose_discovery_fails_its_first_round_keeps_the_discovered_pools(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    pools = ("eu-west-1_Found1", "eu-west-1_Found2")
    for seed, pool_id in enumerate(pools):
        populate(model, pool_id, 4, seed, active_newest=1)
        model.set_pool(pool_id, tags={"team": "identity"})
    discovery = "discovery: [{tags: {team: identity}, refresh_interval: 1h}]\n"
    config = load_text(config_yaml(endpoint, region="eu-west-1", extra=discovery))
    runtime = Runtime(lambda: config, storage_path=str(tmp_path))
    runtime.apply(config)
    first = runtime.scraper.collect(deadline=time.monotonic() + 30)
    assert sorted(result.pool.id for result in first.results if result.success) == list(pools)
    model.faults.cycling_pool_tokens = True  # ListUserPools fails from now on
    runtime.apply(load_text(config_yaml(endpoint, region="eu-west-1", extra=discovery)))
    assert runtime.discovery is not None
    runtime.discovery.refresh(everything=True)
    assert [pool.id for pool in runtime.scraper.pools] == list(pools)
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{p}.json" for p in pools]
    runtime.close()
