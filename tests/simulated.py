"""Simulated pools with known contents, for tests that compare the exporter with the truth."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from exporter.app import Runtime
from exporter.cognito.jobs import KNOWN_STATUSES
from exporter.config.load import load_text
from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from exporter.web.routes import ExporterApp
from tests.exporter_process import Samples, value

STATUSES = KNOWN_STATUSES
NOW = 1_790_000_000.0


TERMINAL = ("Expired", "Stopped", "Failed", "Succeeded")


def populate(
    model: SimulatedCognito, pool_id: str, job_count: int, seed: int, active_newest: int = -1
) -> None:
    """Jobs of random statuses; with `active_newest` >= 0, only that many newest jobs are
    active and the rest finished, as in a real pool."""
    draw = random.Random(seed)  # noqa: S311 - test data
    model.add_pool(pool_id, f"pool {pool_id}", spawning=False)
    for index in range(job_count):
        if active_newest < 0 or index >= job_count - active_newest:
            status = draw.choice(STATUSES)
        else:
            status = draw.choice(TERMINAL)
        created = NOW - (job_count - index) * 600
        model.add_job(
            pool_id,
            name=f"import {index}",
            status=status,
            created=created,
            started=created + 10 if status not in ("Created", "Expired") else None,
            completed=created + 100 if status in ("Stopped", "Failed", "Succeeded") else None,
            imported=draw.randint(0, 5000),
            skipped=draw.randint(0, 50),
            failed=draw.randint(0, 20),
        )


@contextmanager
def serving(model: SimulatedCognito) -> Iterator[str]:
    server = SimulatorServer(model)
    try:
        yield server.start()
    finally:
        server.stop()


def assert_exact(parsed: Samples, model: SimulatedCognito, pool_id: str) -> None:
    """The pool's job count in every status and its user totals equal the simulator's truth."""
    truth = model.counts(pool_id)
    for status in STATUSES:
        seen = value(parsed, "cognito_user_import_jobs", user_pool_id=pool_id, status=status)
        assert seen == truth.statuses.get(status, 0), (pool_id, status)
    for outcome, total in truth.users.items():
        seen = value(
            parsed, "cognito_user_import_users_total", user_pool_id=pool_id, outcome=outcome
        )
        assert seen == total, (pool_id, outcome)


TEST_ACCOUNT = "123456789012"
TEST_CREDENTIALS = (
    "test: {access_key_id: AKIAEXAMPLE, secret_access_key: test-secret-not-real, "
    f'account_id: "{TEST_ACCOUNT}"}}'
)


def config_yaml(
    endpoint: str,
    pools: Iterable[str] = (),
    *,
    scrape: Mapping[str, object] | None = None,
    extra: str = "",
    page_size: int = 60,
    region: str | None = None,
) -> str:
    """A config for the simulator at `endpoint`: fake static credentials of a known account,
    the given pools, and fixed request rates unless `scrape` says otherwise (no
    GetProvisionedLimit call to count). The rates are high enough never to pace a test: the
    tests of rate limits set their own."""
    scrape = {"requests_per_second": 1000, "pool_requests_per_second": 1000, **(scrape or {})}
    scrape_lines = "".join(f"  {key}: {value}\n" for key, value in scrape.items())
    pool_lines = "".join(f"  - id: {pool_id}\n" for pool_id in pools)
    in_region = f"region: {region}, " if region else ""
    return (
        f"defaults: {{{in_region}endpoint_url: {endpoint}, credentials: test, "
        f"page_size: {page_size}}}\n"
        f"credentials:\n  {TEST_CREDENTIALS}\n"
        + (f"scrape:\n{scrape_lines}" if scrape_lines else "")
        + (f"pools:\n{pool_lines}" if pool_lines else "")
        + extra
    )


def exporter_for(text: str) -> tuple[Runtime, ExporterApp]:
    """The real wiring for a config text, served in process (no socket)."""
    config = load_text(text)
    runtime = Runtime(lambda: config)
    runtime.apply(config)
    return runtime, ExporterApp(runtime)
