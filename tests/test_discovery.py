"""Discovery by tag, /probe and /sd against the simulated endpoint over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from exporter.app import Runtime
from exporter.config.load import load_text
from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from exporter.web.routes import ExporterApp
from tests.exporter_process import samples, value
from tests.simulated import assert_exact, config_yaml, populate
from tests.wsgi import call

MATCHING = ("eu-west-1_Ident1", "eu-west-1_Ident2", "eu-west-1_Ident3")
OTHERS = ("eu-west-1_Other1", "eu-west-1_Other2")


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=21)
    for seed, pool_id in enumerate(MATCHING + OTHERS):
        populate(model, pool_id, 8 + seed * 20, seed, active_newest=1)
        team = "identity" if pool_id in MATCHING else "payments"
        model.set_pool(pool_id, tags={"team": team, "env": "prod"})
    return model


@pytest.fixture
def server(model: SimulatedCognito) -> Iterator[SimulatorServer]:
    server = SimulatorServer(model)
    server.start()
    yield server
    server.stop()


def runtime_for(endpoint: str, extra: str = "") -> tuple[Runtime, ExporterApp]:
    discovery = "discovery: [{tags: {team: identity}, refresh_interval: 1h}]\n"
    config = load_text(config_yaml(endpoint, region="eu-west-1", extra=discovery + extra))
    runtime = Runtime(lambda: config)
    runtime.apply(config)
    return runtime, ExporterApp(runtime)


def pool_ids_in(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str) -> set[str]:
    return {dict(labels)["user_pool_id"] for metric, labels in parsed if metric == name}


def test_discovery_by_tag_reports_exactly_the_matching_pools(
    model: SimulatedCognito, server: SimulatorServer
) -> None:
    runtime, app = runtime_for(server.url)
    # the first scrape waits for the first discovery instead of answering with no pools
    status, _, body = call(app, "/metrics")
    parsed = samples(body.decode())
    assert status == 200
    assert pool_ids_in(parsed, "cognito_user_import_jobs") == set(MATCHING)
    for pool_id in MATCHING:
        assert_exact(parsed, model, pool_id)
    assert value(parsed, "cognito_user_import_discovery_success", region="eu-west-1") == 1
    assert (
        value(parsed, "cognito_user_import_discovery_pools", region="eu-west-1", state="collected")
        == 3
    )
    assert model.calls["DescribeUserPool"] == 5
    runtime.close()


def test_sd_lists_every_discovered_pool_with_labels(server: SimulatorServer) -> None:
    runtime, app = runtime_for(server.url)
    assert runtime.discovery is not None
    assert runtime.discovery.wait_for_first_round(10)
    status, headers, body = call(app, "/sd")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    groups = json.loads(body)
    assert sorted(group["targets"][0] for group in groups) == sorted(MATCHING)
    assert {
        "user_pool_id": "eu-west-1_Ident1",
        "user_pool_name": "pool eu-west-1_Ident1",
        "region": "eu-west-1",
    } in [group["labels"] for group in groups]
    runtime.close()


def test_probe_serves_exactly_one_pool(model: SimulatedCognito, server: SimulatorServer) -> None:
    runtime, app = runtime_for(server.url)
    assert runtime.discovery is not None
    runtime.discovery.wait_for_first_round(10)
    model.reset_calls()
    status, _, body = call(app, "/probe", query="target=eu-west-1_Ident2")
    parsed = samples(body.decode())
    assert status == 200
    assert {dict(labels).get("user_pool_id") for _, labels in parsed} == {"eu-west-1_Ident2"}
    assert not any(name.endswith("_build_info") for name, _ in parsed)
    assert (
        value(
            parsed, "cognito_user_import_jobs", user_pool_id="eu-west-1_Ident2", status="Succeeded"
        )
        == model.counts("eu-west-1_Ident2").statuses["Succeeded"]
    )
    assert dict(model.calls_by_pool) == {"eu-west-1_Ident2": 1}
    assert call(app, "/probe", query="target=eu-west-1_Other1")[0] == 404
    assert call(app, "/probe", query="target=not%20a%20pool")[0] == 400
    assert call(app, "/probe", query="")[0] == 400
    runtime.close()


def test_probe_of_an_unlisted_pool_when_allowed(server: SimulatorServer) -> None:
    runtime, app = runtime_for(server.url, "probe: {allow_unlisted: true, credentials: test}")
    status, _, body = call(app, "/probe", query="target=eu-west-1_Other1")
    assert status == 200
    assert (
        value(
            samples(body.decode()),
            "cognito_user_import_scrape_success",
            user_pool_id="eu-west-1_Other1",
        )
        == 1
    )
    runtime.close()


def test_a_failed_discovery_keeps_the_last_good_list(server: SimulatorServer) -> None:
    runtime, app = runtime_for(server.url)
    discovery = runtime.discovery
    assert discovery is not None
    assert discovery.wait_for_first_round(10)
    server.stop()
    discovery.refresh(everything=True)
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, "cognito_user_import_discovery_success", region="eu-west-1") == 0
    assert (
        value(parsed, "cognito_user_import_discovery_pools", region="eu-west-1", state="collected")
        == 3
    )
    assert pool_ids_in(parsed, "cognito_user_import_scrape_success") == set(MATCHING)
    runtime.close()


def test_static_pools_win_over_discovered_ones(server: SimulatorServer) -> None:
    runtime, _ = runtime_for(server.url, "pools: [{id: eu-west-1_Ident1, name: primary}]")
    assert runtime.discovery is not None
    runtime.discovery.wait_for_first_round(10)
    pools = runtime.scraper.pools
    assert [pool.id for pool in pools].count("eu-west-1_Ident1") == 1
    assert pools[0].name == "primary"
    assert len(pools) == 3
    runtime.close()
