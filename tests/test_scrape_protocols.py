"""Prometheus 3 scraping the exporter with each of its scrape protocols alone.

Prometheus 3 asks for one exposition format at a time (`scrape_protocols`, each its own
Accept header) and refuses an answer whose Content-Type it cannot parse unless a fallback is
configured. A recording proxy between them shows what Prometheus asked for and what the
exporter answered; every protocol must bring the target up with the same series. The exporter
collects from a simulated Cognito that does not change, so every scrape holds the same series.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from exporter.demo.service import SimulatedCognito
from tests.exporter_process import running_exporter
from tests.prometheus_releases import release_of
from tests.prometheus_server import Prometheus, running_prometheus_with
from tests.recording_proxy import RecordingProxy, recording_proxy
from tests.simulated import config_yaml, populate, serving

pytestmark = pytest.mark.slow

POOL_SIZES = {"eu-west-1_Small7": 7, "us-east-1_Pages61": 61}
SCRAPES_PER_PROTOCOL = 3
# Prometheus 3's scrape protocols, the media type each asks for first (config.go's
# ScrapeProtocolsHeaders) and the one the exporter answers with. The exporter has no protobuf
# and no OpenMetrics 0.0.1: those requests end in Prometheus' */* and get the text format.
PROTOCOLS = {
    "PrometheusProto": (
        "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
        "text/plain; version=0.0.4",
    ),
    "OpenMetricsText1.0.0": (
        "application/openmetrics-text;version=1.0.0",
        "application/openmetrics-text; version=1.0.0",
    ),
    "OpenMetricsText0.0.1": (
        "application/openmetrics-text;version=0.0.1",
        "text/plain; version=0.0.4",
    ),
    "PrometheusText1.0.0": ("text/plain;version=1.0.0", "text/plain; version=1.0.0"),
    "PrometheusText0.0.4": ("text/plain;version=0.0.4", "text/plain; version=0.0.4"),
}

Json = dict[str, Any]
Series = frozenset[tuple[str, str]]


def scrape_job(protocol: str, proxy_address: str) -> Json:
    """A job scraping the exporter through the proxy with only this protocol, under a path
    the proxy records it by."""
    return {
        "job_name": protocol,
        "metrics_path": f"/{protocol}",
        "scrape_protocols": [protocol],
        "static_configs": [{"targets": [proxy_address]}],
    }


def series_of(prometheus: Prometheus, job: str) -> set[Series]:
    """The label sets (the job label left out) of every series of the job's last scrape."""
    return {
        frozenset((k, v) for k, v in series["metric"].items() if k != "job")
        for series in prometheus.vector(f'{{job="{job}"}}')
    }


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Prometheus, RecordingProxy]]:
    """A Prometheus 3 that has scraped the exporter a few times with each protocol."""
    release = release_of(3)
    workdir = tmp_path_factory.mktemp("scrape-protocols")
    model = SimulatedCognito(seed=5)
    for seed, (pool_id, size) in enumerate(POOL_SIZES.items()):
        populate(model, pool_id, size, seed)
    with serving(model) as endpoint:
        config = workdir / "config.yaml"
        config.write_text(config_yaml(endpoint, POOL_SIZES), encoding="utf-8")
        with (
            running_exporter("--config.file", str(config), workdir=workdir) as exporter,
            recording_proxy(exporter.base_url.removeprefix("http://")) as (address, proxy),
        ):
            document = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [scrape_job(protocol, address) for protocol in PROTOCOLS],
            }
            every_job_scraped = (
                f"count(count_over_time(up[1m]) >= {SCRAPES_PER_PROTOCOL}) == {len(PROTOCOLS)}"
            )
            with running_prometheus_with(workdir, release, document, every_job_scraped) as server:
                yield server, proxy


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_each_protocol_is_asked_for_and_answered_in_a_format_prometheus_reads(
    scraped: tuple[Prometheus, RecordingProxy], protocol: str
) -> None:
    prometheus, proxy = scraped
    asked_for, answered_with = PROTOCOLS[protocol]

    exchanges = proxy.exchanges(f"/{protocol}")
    assert len(exchanges) >= SCRAPES_PER_PROTOCOL
    for exchange in exchanges:
        assert exchange.status == 200
        assert exchange.accept.startswith(asked_for + ";"), exchange.accept
        assert exchange.content_type.startswith(answered_with + ";"), exchange.content_type
    [up] = prometheus.vector(f'up{{job="{protocol}"}}')
    assert up["value"][1] == "1"


def test_every_protocol_brings_the_same_series(
    scraped: tuple[Prometheus, RecordingProxy],
) -> None:
    prometheus, _ = scraped
    by_protocol = {protocol: series_of(prometheus, protocol) for protocol in PROTOCOLS}

    reference = by_protocol["PrometheusText0.0.4"]
    names = {dict(series)["__name__"] for series in reference}
    assert {"up", "cognito_user_import_jobs", "cognito_user_import_job_info"} <= names
    for protocol, series in by_protocol.items():
        assert series == reference, (
            protocol,
            sorted(dict(s)["__name__"] for s in series - reference),
            sorted(dict(s)["__name__"] for s in reference - series),
        )
