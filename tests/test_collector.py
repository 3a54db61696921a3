"""The exposition, compared exactly with a golden file (UPDATE_GOLDEN=1 rewrites it)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.cognito.clients import ClientFactory, ClientSettings
from exporter.collect.attempts import AttemptGate
from exporter.collect.collector import families
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import BucketRegistry
from exporter.collect.scraper import Scraper
from exporter.config.load import load_text
from exporter.demo.service import SimulatedCognito
from tests.clocks import SteppingClock
from tests.simulated import NOW, populate, serving

GOLDEN = Path(__file__).parent / "testdata" / "golden.prom"


class Fixed(Collector):
    def __init__(self, built: list[Metric]) -> None:
        self._built = built

    def collect(self) -> Iterable[Metric]:
        return self._built


def test_exposition_matches_the_golden_file() -> None:
    model = SimulatedCognito(seed=5, clock=lambda: NOW)
    populate(model, "eu-west-1_Golden1", 12, seed=1, active_newest=2)
    model.add_pool("eu-west-1_Empty2", "empty", spawning=False)
    with serving(model) as endpoint:
        config = load_text(
            f"""
defaults: {{endpoint_url: {endpoint}, credentials: test}}
credentials:
  test: {{access_key_id: AKIAEXAMPLE, secret_access_key: test-secret-not-real}}
scrape: {{max_jobs_per_pool: 4}}
pools:
  - {{id: eu-west-1_Golden1, name: golden, labels: {{team: identity, tier: gold}}}}
  - {{id: eu-west-1_Empty2}}
  - {{id: eu-west-1_Gone3, name: gone}}
"""
        )
        registry = CollectorRegistry()
        metrics = ExporterMetrics(registry, "test")

        def frozen() -> float:
            return 0.0

        limiter_time = SteppingClock()
        gate = AttemptGate(
            metrics,
            BucketRegistry(1000, limiter_time.now, limiter_time.sleep),
            BucketRegistry(1000, limiter_time.now, limiter_time.sleep),
            clock=frozen,
        )
        factory = ClientFactory(config.credentials, ClientSettings(), observer=gate)
        scraper = Scraper(
            config.pools, config.scrape, factory, metrics, clock=frozen, wall_clock=lambda: NOW
        )
        snapshot = scraper.collect(deadline=30.0)
        scraper.close()
    exposition_registry = CollectorRegistry()
    exposition_registry.register(Fixed(families(snapshot)))
    exposition = generate_latest(exposition_registry).decode()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(exposition)
    assert exposition == GOLDEN.read_text()
