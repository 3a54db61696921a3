"""Reading reasons when the configuration, the logs endpoint or the log itself works against
it, over real botocore and HTTP against the simulated Cognito and CloudWatch Logs: a reload
that turns reading off, a slow Region beside a healthy one, duplicated events, errors that
will never succeed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from exporter.app import Runtime
from exporter.collect.reasons_reader import ReadLimits, ReasonsReader
from exporter.config.load import load_text
from exporter.demo.logs import expected_reasons
from exporter.demo.service import SimulatedCognito
from exporter.web.statuspage import landing_page
from tests.simulated import config_yaml, serving
from tests.test_reasons_reading import IDLE_WITHIN, POOL, finished, reasons_of, scrape, state_of
from tests.tools import wait_until

OTHER_REGION_POOL = "us-east-1_Healthy1"


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=5, clock=time.time)
    model.add_pool(POOL, "the real name", spawning=False)
    return model


def pools_yaml(*pools: tuple[str, str, bool]) -> str:
    """Pools as (id, logs endpoint, reasons on)."""
    return "pools:\n" + "".join(
        f"  - {{id: {pool_id}, reasons: {str(on).lower()}, logs_endpoint_url: {logs}}}\n"
        for pool_id, logs, on in pools
    )


@contextmanager
def reloadable(
    endpoint: str, texts: list[str], limits: ReadLimits
) -> Iterator[tuple[Runtime, ReasonsReader]]:
    """The exporter over the config `texts[-1]`: a test appends a text, then reloads."""
    runtime = Runtime(
        lambda: load_text(config_yaml(endpoint, extra=texts[-1])), reasons_limits=limits
    )
    runtime.start()
    try:
        yield runtime, runtime.reasons_reader
    finally:
        runtime.close()


def test_a_reload_that_turns_reasons_off_stops_reading_at_once(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "big", skipped=0, failed=3_000)
    model.logs.faults.page_bytes = 2_000  # some 20 rows a page: 150 pages
    texts = [pools_yaml((POOL, endpoint, True))]
    limits = ReadLimits(requests_per_second=20, pages_per_turn=5)
    with reloadable(endpoint, texts, limits) as (runtime, reader):
        scrape(runtime)
        wait_until(lambda: model.logs.call_count() >= 3, 10, "the read under way")
        texts.append(pools_yaml((POOL, endpoint, False)))
        assert runtime.reload().ok
        at_reload = model.logs.call_count()
        assert reader.wait_until_idle(IDLE_WITHIN)
        parsed = scrape(runtime)
    # at most the call under way when the reload came
    assert model.logs.call_count() - at_reload <= 1
    assert model.logs.call_count() < 20
    assert state_of(parsed) == "off"
    assert reasons_of(parsed, job_id) == {}


def test_a_slow_region_delays_a_healthy_region_s_reasons_by_one_turn_at_most(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.add_pool(OTHER_REGION_POOL, "healthy", spawning=False)
    for n in range(10):
        finished(model, f"slow {n}", skipped=1, failed=1, ago=900 - n)
    slow = SimulatedCognito(seed=6, clock=time.time)  # the slow Region's logs endpoint
    slow.logs.faults.latency = 2.0
    # one reader: the turns alone keep the healthy Region from waiting
    limits = ReadLimits(requests_per_second=200, call_seconds=1.0, retry_seconds=0.05, readers=1)
    with serving(slow) as slow_endpoint:
        texts = [pools_yaml((POOL, slow_endpoint, True), (OTHER_REGION_POOL, endpoint, True))]
        with reloadable(endpoint, texts, limits) as (runtime, _reader):
            scrape(runtime)
            wait_until(lambda: slow.logs.call_count() >= 1, 10, "the slow Region's first call")
            healthy = model.add_job(
                OTHER_REGION_POOL,
                name="healthy",
                status="Failed",
                created=time.time() - 700,
                started=time.time() - 690,
                completed=time.time() - 600,
                imported=40,
                skipped=2,
                failed=3,
            )
            offered = time.monotonic()
            wait_until(
                lambda: reasons_of(scrape(runtime), healthy) == expected_reasons(healthy, 2, 3),
                20,
                "the healthy Region's reasons",
            )
            waited = time.monotonic() - offered
    # one turn of the slow Region (a call cut off at 1 s), where ten came before
    assert waited < 3.0, waited
    assert model.logs.calls == {"FilterLogEvents": 1}


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "InvalidParameterException"])
def test_an_error_that_will_never_succeed_is_tried_once_and_the_job_says_why(
    model: SimulatedCognito, endpoint: str, code: str
) -> None:
    job_id = finished(model, "no group", skipped=1, failed=2)
    model.logs.faults.error = code
    texts = [pools_yaml((POOL, endpoint, True))]
    limits = ReadLimits(requests_per_second=200, retry_seconds=0.05, tries=5)
    with reloadable(endpoint, texts, limits) as (runtime, reader):
        scrape(runtime)
        assert reader.wait_until_idle(IDLE_WITHIN)
        parsed = scrape(runtime)
        page = landing_page(runtime.scraper.pools, runtime.scraper.last_snapshot).decode()
    assert model.logs.calls == {"FilterLogEvents": 1}
    assert reasons_of(parsed, job_id) == {}
    assert state_of(parsed) == "reading"
    short = code.removesuffix("Exception")
    assert f"Reasons: the job's log could not be read ({short}: An error occurred ({code})" in page


def test_events_given_twice_are_counted_once(model: SimulatedCognito, endpoint: str) -> None:
    job_id = finished(model, "twice", skipped=30, failed=90)
    # pages that overlap by an event, and the whole log again in a second stream
    model.logs.faults.overlapping_pages = True
    model.logs.faults.copied_stream = True
    model.logs.faults.page_bytes = 1_500
    texts = [pools_yaml((POOL, endpoint, True))]
    with reloadable(endpoint, texts, ReadLimits(requests_per_second=200)) as (runtime, reader):
        scrape(runtime)
        assert reader.wait_until_idle(IDLE_WITHIN)
        parsed = scrape(runtime)
    assert reasons_of(parsed, job_id) == expected_reasons(job_id, 30, 90)
    assert reasons_of(parsed) == expected_reasons(job_id, 30, 90)


def test_no_more_users_of_an_outcome_are_counted_than_the_job_reports(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "more rows than users", skipped=1, failed=2)
    model.logs.set_lines(
        job_id,
        [
            "[FAILED] Line Number 2 - Internal error.",
            "[FAILED] Line Number 2 - Internal error.",  # the same row written twice
            "[SKIPPED] Line Number 3 - The user already exists.",
            "[FAILED] Line Number 4 - The user data does not match the schema.",
            "[FAILED] Line Number 5 - The user data does not match the schema.",
            "[SKIPPED] Line Number 6 - The user already exists.",
        ],
    )
    texts = [pools_yaml((POOL, endpoint, True))]
    with reloadable(endpoint, texts, ReadLimits(requests_per_second=200)) as (runtime, reader):
        scrape(runtime)
        assert reader.wait_until_idle(IDLE_WITHIN)
        parsed = scrape(runtime)
    assert reasons_of(parsed, job_id) == {
        ("failed", "internal_error"): 1,
        ("failed", "schema_mismatch"): 1,
        ("skipped", "already_exists"): 1,
    }
