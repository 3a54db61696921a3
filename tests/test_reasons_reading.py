"""Reading the reasons behind skipped and failed users from job logs, over real botocore and
HTTP against the simulated Cognito and CloudWatch Logs: exact counts for every wording, the
paging quirks, refusal, throttling and slowness that never reach a scrape, bounds, and a
restart that reads nothing again."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from prometheus_client import generate_latest

from exporter.app import Runtime
from exporter.collect.reasons import REASONS, ROW_OUTCOMES
from exporter.collect.reasons_reader import ReadLimits, ReasonsReader
from exporter.config.load import load_text
from exporter.demo.logs import FAILED_TEXTS, SKIPPED_TEXTS, expected_reasons
from exporter.demo.service import SimulatedCognito
from exporter.web.statuspage import landing_page
from tests.exporter_process import Samples, samples
from tests.simulated import config_yaml
from tests.tools import wait_until

POOL = "eu-west-1_Reason1"
# the exporter's job window is of wall time: the jobs finished minutes ago
FAST = ReadLimits(requests_per_second=200, retry_seconds=0.05, throttled_seconds=0.05)
IDLE_WITHIN = 20.0


@pytest.fixture
def model() -> SimulatedCognito:
    # now as the test starts, not as the module was imported: whether a log may still be
    # settling is told by the wall clock
    now = time.time()
    model = SimulatedCognito(seed=4, clock=lambda: now)
    model.add_pool(POOL, "the real name", spawning=False)
    return model


def finished(
    model: SimulatedCognito, name: str, *, skipped: int, failed: int, ago: float = 600
) -> str:
    now = model.clock()
    return model.add_job(
        POOL,
        name=name,
        status="Succeeded",
        created=now - ago - 100,
        started=now - ago - 90,
        completed=now - ago,
        imported=40,
        skipped=skipped,
        failed=failed,
    )


@contextmanager
def exporter(
    endpoint: str, limits: ReadLimits = FAST, storage: str = "", reasons: bool = True
) -> Iterator[tuple[Runtime, ReasonsReader]]:
    text = config_yaml(
        endpoint,
        extra=f"pools:\n  - {{id: {POOL}, name: Shown name, reasons: {str(reasons).lower()}, "
        f"logs_endpoint_url: {endpoint}}}\n",
    )
    runtime = Runtime(lambda: load_text(text), storage_path=storage, reasons_limits=limits)
    runtime.start()
    try:
        yield runtime, runtime.reasons_reader
    finally:
        runtime.close()


def scrape(runtime: Runtime) -> Samples:
    parsed = samples(generate_latest(runtime.registry).decode())
    for (name, labels), _ in parsed.items():
        if "reason" in name:
            shown = dict(labels)
            assert shown.get("reason", "other") in REASONS, (name, shown)
            assert shown.get("outcome", "failed") in ROW_OUTCOMES, (name, shown)
    return parsed


def reasons_of(parsed: Samples, job_id: str | None = None) -> dict[tuple[str, str], float]:
    """The pool's counter (or a job's gauge) of users by outcome and reason, zeros left out."""
    name = "cognito_user_import_reason_users_total"
    if job_id is not None:
        name = "cognito_user_import_job_reason_users"
    found = {}
    for (sample, labels), users in parsed.items():
        shown = dict(labels)
        if sample == name and users and shown.get("job_id") == job_id:
            found[(shown["outcome"], shown["reason"])] = users
    return found


def state_of(parsed: Samples) -> str:
    states = [
        dict(labels)["state"]
        for (name, labels), on in parsed.items()
        if name == "cognito_user_import_reasons_state" and on == 1
    ]
    assert len(states) == 1, states
    return states[0]


def read_all(runtime: Runtime, reader: ReasonsReader) -> Samples:
    scrape(runtime)
    assert reader.wait_until_idle(IDLE_WITHIN)
    return scrape(runtime)


def test_every_wording_is_counted_exactly_per_job_and_per_pool(
    model: SimulatedCognito, endpoint: str
) -> None:
    every = 6 * len(SKIPPED_TEXTS) * len(FAILED_TEXTS)
    plain = finished(model, "nightly", skipped=every, failed=every, ago=900)
    own = finished(model, "own lines", skipped=1, failed=4, ago=300)
    model.logs.set_lines(
        own,
        [
            "Cognito User Pools Import - Test Log",
            "[SUCCEEDED] Line Number 2 - The import succeeded.",
            "[SKIPPED] Line Number 3 - User already exists",
            "[FAILED]  Line Number: 4 -  the user data doesn't match the schema",
            "[FAILED] Line Number 5 - InternalError: please try again",
            "[FAILED] Line Number 6 - A wording from next year.",
            "[FAILED] Line Number 7 - The User Record does not set any of the auto verified "
            "attributes to verified. (Example: email_verified to verified).",
            "A FAILED line that is not a row",
        ],
    )
    with exporter(endpoint) as (runtime, reader):
        parsed = read_all(runtime, reader)
        page = landing_page(runtime.scraper.pools, runtime.scraper.last_snapshot).decode()
    assert reasons_of(parsed, plain) == expected_reasons(plain, every, every)
    assert reasons_of(parsed, plain) == {
        ("skipped", "already_exists"): 72,
        ("failed", "no_verified_attribute"): 24,
        ("failed", "schema_mismatch"): 24,
        ("failed", "internal_error"): 12,
        ("failed", "other"): 12,
    }
    assert reasons_of(parsed, own) == {
        ("skipped", "already_exists"): 1,
        ("failed", "schema_mismatch"): 1,
        ("failed", "internal_error"): 1,
        ("failed", "other"): 1,
        ("failed", "no_verified_attribute"): 1,
    }
    assert reasons_of(parsed) == {
        ("skipped", "already_exists"): 73,
        ("failed", "no_verified_attribute"): 25,
        ("failed", "schema_mismatch"): 25,
        ("failed", "internal_error"): 13,
        ("failed", "other"): 13,
    }
    assert state_of(parsed) == "reading"
    # one page a job, and the pool's name read once for its log group
    assert model.logs.calls == {"FilterLogEvents": 2}
    assert model.call_counts()["DescribeUserPool"] == 1
    assert "line 6: A wording from next year." in page
    assert "1 failed: internal_error" in page


def test_empty_pages_with_a_token_and_pages_cut_at_their_size_are_read_to_the_end(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "paged", skipped=100, failed=300)
    model.logs.faults.empty_pages = 3
    model.logs.faults.page_bytes = 4_000
    with exporter(endpoint) as (runtime, reader):
        parsed = read_all(runtime, reader)
    assert reasons_of(parsed, job_id) == expected_reasons(job_id, 100, 300)
    # 400 rows of 50 to 150 bytes (26 more counted each) in pages of 4,000 bytes
    assert (
        3 + math.ceil(400 * 76 / 4_000)
        <= model.logs.calls["FilterLogEvents"]
        <= 3 + 400 * 176 // 4_000 + 1
    )


def test_a_refusal_logs_once_turns_reading_off_and_a_reload_turns_it_on(
    model: SimulatedCognito, endpoint: str, log_stream: io.StringIO
) -> None:
    first = finished(model, "first", skipped=2, failed=2, ago=900)
    second = finished(model, "second", skipped=2, failed=2, ago=800)
    model.logs.faults.error = "AccessDeniedException"
    with exporter(endpoint) as (runtime, reader):
        parsed = read_all(runtime, reader)
        assert state_of(parsed) == "denied"
        page = landing_page(runtime.scraper.pools, runtime.scraper.last_snapshot).decode()
        assert page.count("Reasons not read: logs:FilterLogEvents is denied") == 3  # pool, jobs
        finished(model, "third", skipped=1, failed=0, ago=100)
        parsed = read_all(runtime, reader)
        assert state_of(parsed) == "denied"
        assert model.logs.calls == {"FilterLogEvents": 1}  # the others were not tried
        assert (
            parsed[("cognito_user_import_scrape_success", frozenset({("user_pool_id", POOL)}))] == 1
        )
        model.logs.faults.clear()
        runtime.reload()
        parsed = read_all(runtime, reader)
    assert state_of(parsed) == "reading"
    assert reasons_of(parsed, first) == expected_reasons(first, 2, 2)
    assert reasons_of(parsed, second) == expected_reasons(second, 2, 2)
    logged = [line for line in log_stream.getvalue().splitlines() if "logs:FilterLogEvents" in line]
    assert len(logged) == 1, logged
    assert "error_code=AccessDenied" in logged[0]


def test_throttling_slows_reading_down_and_every_user_is_still_counted(
    model: SimulatedCognito, endpoint: str
) -> None:
    jobs = [finished(model, f"job {n}", skipped=3, failed=5, ago=900 - n) for n in range(4)]
    model.logs.faults.throttle_rate = 0.6
    with exporter(endpoint) as (runtime, reader):
        parsed = read_all(runtime, reader)
    for job_id in jobs:
        assert reasons_of(parsed, job_id) == expected_reasons(job_id, 3, 5)
    assert model.logs.calls["FilterLogEvents"] > 4


def test_a_slow_logs_endpoint_never_delays_a_scrape(model: SimulatedCognito, endpoint: str) -> None:
    for n in range(3):
        finished(model, f"job {n}", skipped=1, failed=1, ago=900 - n)
    model.logs.faults.latency = 3.0
    limits = ReadLimits(requests_per_second=200, call_seconds=2.0, tries=1)
    success = ("cognito_user_import_scrape_success", frozenset({("user_pool_id", POOL)}))
    with exporter(endpoint, limits) as (runtime, _reader):
        scrape(runtime)
        # from here the reader sits in a call whose answer takes 3 s, cut off at 2 s
        wait_until(lambda: model.logs.call_count() == 1, 10, "the first FilterLogEvents")
        durations = []
        for _ in range(5):
            started = time.monotonic()
            parsed = scrape(runtime)
            durations.append(time.monotonic() - started)
            assert parsed[success] == 1
        assert model.logs.call_count() == 1
    assert max(durations) < 1.0, durations


def test_a_job_is_read_within_its_page_bound_and_marked_incomplete(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "huge", skipped=0, failed=500)
    model.logs.faults.page_bytes = 1_000
    limits = ReadLimits(requests_per_second=200, pages_per_job=4, pages_per_turn=2)
    with exporter(endpoint, limits) as (runtime, reader):
        parsed = read_all(runtime, reader)
        page = landing_page(runtime.scraper.pools, runtime.scraper.last_snapshot).decode()
    assert model.logs.calls["FilterLogEvents"] == 4
    read = sum(reasons_of(parsed, job_id).values())
    assert 4 <= read < 500
    assert "not every skipped or failed user was found in the log" in page


def test_a_restart_reads_no_log_again_and_an_older_file_still_loads(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    job_id = finished(model, "kept", skipped=4, failed=6)
    with exporter(endpoint, storage=str(tmp_path)) as (runtime, reader):
        read_all(runtime, reader)
    calls = model.logs.calls["FilterLogEvents"], model.call_counts()["DescribeUserPool"]
    assert calls == (1, 1)
    with exporter(endpoint, storage=str(tmp_path)) as (runtime, reader):
        parsed = read_all(runtime, reader)
    assert reasons_of(parsed, job_id) == expected_reasons(job_id, 4, 6)
    assert reasons_of(parsed) == expected_reasons(job_id, 4, 6)
    assert (model.logs.calls["FilterLogEvents"], model.call_counts()["DescribeUserPool"]) == calls
    stored = tmp_path / f"{POOL}.json"
    document = orjson.loads(stored.read_bytes())
    del document["reasons"]
    stored.write_bytes(orjson.dumps(document))
    with exporter(endpoint, storage=str(tmp_path)) as (runtime, reader):
        parsed = read_all(runtime, reader)
    assert reasons_of(parsed, job_id) == expected_reasons(job_id, 4, 6)
    assert model.logs.calls["FilterLogEvents"] == 2


def test_a_job_that_writes_no_log_costs_no_call_and_the_pool_says_why(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "no role", skipped=3, failed=0)
    model.set_job(POOL, job_id, role_arn="")
    with exporter(endpoint) as (runtime, reader):
        parsed = read_all(runtime, reader)
    assert state_of(parsed) == "no_log_role"
    assert model.logs.calls == {}


def test_reasons_off_read_nothing_and_a_scrape_costs_the_same_calls_either_way(
    model: SimulatedCognito, endpoint: str
) -> None:
    for n in range(5):
        finished(model, f"job {n}", skipped=2, failed=2, ago=900 - n)
    listed = []
    for reasons in (False, True):
        model.reset_calls()
        with exporter(endpoint, reasons=reasons) as (runtime, reader):
            for _ in range(4):
                parsed = scrape(runtime)
            assert reader.wait_until_idle(IDLE_WITHIN)
        listed.append(model.call_counts()["ListUserImportJobs"])
        assert state_of(parsed) == ("reading" if reasons else "off")
    assert listed == [4, 4]
    assert model.logs.calls == {"FilterLogEvents": 5}


def test_hostile_lines_and_a_job_name_holding_an_address_are_read_safely(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "sync for alice@example.com", skipped=0, failed=5)
    model.logs.set_lines(
        job_id,
        [
            "[FAILED] Line Number 2 - \x1b[31m internal error\x00 <script>x</script>",
            "[FAILED] Line Number 3 - schema " + "long words " * 100_000,
            "[FAILED] Line Number 4 - BADBYTES the user data does not match",
            '[FAILED] Line Number 5 - cognito_user_import_jobs{x="1"} 1\n# HELP',
            "[FAILED] Line Number 6 - \u202edetareneg",
        ],
    )
    model.logs.faults.not_utf8_marker = "BADBYTES"
    with exporter(endpoint) as (runtime, reader):
        parsed = read_all(runtime, reader)
        page = landing_page(runtime.scraper.pools, runtime.scraper.last_snapshot).decode()
    assert reasons_of(parsed, job_id) == {
        ("failed", "internal_error"): 1,
        ("failed", "schema_mismatch"): 2,
        ("failed", "other"): 2,
    }
    assert "<script>" not in page
    assert "\\x1b[31m internal error\\x00 &lt;script&gt;x&lt;/script&gt;" in page
    assert "\ufffd\ufffd the user data does not match" in page
    assert "sync for alice@example.com" in page  # shown as the job's name is shown elsewhere


def test_answers_cut_off_at_their_deadline_are_tried_a_few_times_then_the_job_given_up(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "slow", skipped=1, failed=1)
    model.logs.faults.latency = 1.0
    limits = ReadLimits(requests_per_second=200, call_seconds=0.3, tries=2, retry_seconds=0.05)
    with exporter(endpoint, limits) as (runtime, reader):
        parsed = read_all(runtime, reader)
        page = landing_page(runtime.scraper.pools, runtime.scraper.last_snapshot).decode()
    assert model.logs.calls == {"FilterLogEvents": 2}
    assert reasons_of(parsed, job_id) == {}
    assert "the job's log could not be read" in page
    errors = (
        "cognito_user_import_api_errors_total",
        frozenset({("user_pool_id", POOL), ("error_code", "Timeout")}),
    )
    assert parsed[errors] == 2


def test_a_token_that_comes_back_again_ends_the_job_s_read_within_its_tries(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "looping", skipped=2, failed=2)
    model.logs.faults.empty_pages = 1
    model.logs.faults.repeat_token = True
    limits = ReadLimits(requests_per_second=200, tries=3, retry_seconds=0.05)
    with exporter(endpoint, limits) as (runtime, reader):
        parsed = read_all(runtime, reader)
    # the first page's token, then the same token back on each of three tries
    assert model.logs.calls == {"FilterLogEvents": 4}
    assert reasons_of(parsed, job_id) == {}


def test_a_log_read_just_after_its_job_finished_that_lacks_rows_is_read_again_once(
    model: SimulatedCognito, endpoint: str
) -> None:
    job_id = finished(model, "just now", skipped=0, failed=3, ago=5)
    rows = [f"[FAILED] Line Number {n} - Internal error." for n in (2, 3, 4)]
    model.logs.set_lines(job_id, rows[:1])
    limits = ReadLimits(requests_per_second=200, retry_seconds=1.0)
    with exporter(endpoint, limits) as (runtime, reader):
        scrape(runtime)
        wait_until(lambda: model.logs.call_count() == 1, 10, "the first read")
        model.logs.set_lines(job_id, rows)  # the rest of the log arrives
        assert reader.wait_until_idle(IDLE_WITHIN)
        parsed = scrape(runtime)
    assert reasons_of(parsed, job_id) == {("failed", "internal_error"): 3}
    assert model.logs.calls == {"FilterLogEvents": 2}
