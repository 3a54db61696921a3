"""The reasons behind skipped and failed users, read from log lines: the closed set, matched
on meaning; what a job's tally keeps of hostile lines; and a pool's reasons as kept and
stored."""

from __future__ import annotations

import time

import orjson
import pytest

from exporter.cognito.jobs import Job
from exporter.collect.reasons import (
    EXAMPLE_CHARS,
    EXAMPLES_PER_REASON,
    MAX_LINE_SEEN,
    REASONS,
    LinesSeen,
    ReasonTally,
    Row,
    parse_row,
    reason_of,
)
from exporter.collect.reasons_pool import DENIED, NO_LOG_ROLE, OFF, READING, JobReasons, PoolReasons
from exporter.demo.logs import FAILED_TEXTS, SKIPPED_TEXTS

# the guide's own lines, then wordings seen in real logs or likely ones
WORDINGS = [
    ("The user already exists.", "already_exists"),
    ("User already exists", "already_exists"),
    (
        "The User Record does not set any of the auto verified attributes to true. "
        "(Example: email_verified to true).",
        "no_verified_attribute",
    ),
    (
        "The User Record does not set any of the auto verified attributes to verified. "
        "(Example: email_verified to verified).",
        "no_verified_attribute",
    ),
    ("No auto-verified attributes are set to true.", "no_verified_attribute"),
    ("The user data doesn't match the schema.", "schema_mismatch"),
    ("Invalid attribute value for phone_number.", "schema_mismatch"),
    ("Required attribute given_name is missing.", "schema_mismatch"),
    ("The user couldn't be imported due to an internal error.", "internal_error"),
    ("An unexpected error occurred.", "internal_error"),
    ("InternalErrorException: try again", "internal_error"),
    ("USER ALREADY EXISTS", "already_exists"),
    ("Something nobody has seen before.", "other"),
    ("", "other"),
]


@pytest.mark.parametrize(("text", "reason"), WORDINGS)
def test_a_wording_lands_in_the_reason_it_means(text: str, reason: str) -> None:
    assert reason_of(text) == reason


@pytest.mark.parametrize(("text", "reason"), [*SKIPPED_TEXTS, *FAILED_TEXTS])
def test_every_wording_the_simulator_writes_is_read_as_it_means(text: str, reason: str) -> None:
    assert reason_of(text) == reason


def test_rows_are_read_whatever_their_spacing_and_case() -> None:
    assert parse_row("[FAILED] Line Number 5956 - The user already exists.") == Row(
        "failed", 5956, "The user already exists."
    )
    assert parse_row("[skipped]  line number: 7 -  x ") == Row("skipped", 7, "x")
    assert parse_row("[SUCCEEDED] Line Number 2 - The import succeeded.") == Row(
        "succeeded", 2, "The import succeeded."
    )


@pytest.mark.parametrize(
    "line",
    [
        "Cognito User Pools Import - Test Log",
        "FAILED to start",
        "[FAILED] no line number here",
        "[FAILED] Line Number 99999999999999999999 - too long a number",
        "",
    ],
)
def test_lines_that_are_not_rows_count_for_nothing(line: str) -> None:
    tally = ReasonTally()
    tally.add([line])
    assert tally.counts == {}
    assert tally.examples == []


def test_a_tally_counts_skipped_and_failed_rows_only_with_a_few_examples_each() -> None:
    lines = ["Cognito User Pools Import - Test Log"]
    lines += [f"[SUCCEEDED] Line Number {n} - The import succeeded." for n in range(2, 10)]
    lines += [f"[SKIPPED] Line Number {n} - The user already exists." for n in range(10, 20)]
    lines += [f"[FAILED] Line Number {n} - Internal error." for n in range(20, 23)]
    tally = ReasonTally()
    tally.add(lines)
    assert tally.counts == {("skipped", "already_exists"): 10, ("failed", "internal_error"): 3}
    assert tally.users == 13
    assert [(e.line, e.reason) for e in tally.examples] == [
        *((n, "already_exists") for n in range(10, 10 + EXAMPLES_PER_REASON)),
        (20, "internal_error"),
        (21, "internal_error"),
        (22, "internal_error"),
    ]


def test_hostile_text_is_counted_and_its_example_kept_short_printable_and_redacted() -> None:
    tally = ReasonTally()
    tally.add(
        [
            "[FAILED] Line Number 2 - \x1b[2J\x00internal error \udcff\u202e",
            "[FAILED] Line Number 3 - schema " + "long words " * 30_000,
            "[FAILED] Line Number 4 - see https://bucket.example/upload?X-Amz-Signature=abc",
            "[FAILED] Line Number 5 - " + "\x07" * 1_000,
        ]
    )
    assert tally.counts == {
        ("failed", "internal_error"): 1,
        ("failed", "schema_mismatch"): 1,
        ("failed", "other"): 2,
    }
    texts = {example.line: example.text for example in tally.examples}
    assert texts[2] == "\\x1b[2J\\x00internal error \\udcff\\u202e"
    assert len(texts[3]) == EXAMPLE_CHARS
    assert texts[4] == "see <url>"
    assert all(text.isprintable() for text in texts.values())
    assert len(texts[5]) == EXAMPLE_CHARS
    # what is kept of the worst text still comes back from storage
    reasons = PoolReasons()
    reasons.record(JobReasons("import-a", dict(tally.counts), tuple(tally.examples), True))
    restored = PoolReasons()
    restored.restore(reasons.stored())
    assert restored.stored() == reasons.stored()


def job(job_id: str, *, skipped: int = 1, failed: int = 0, role: str | None = "arn:role") -> Job:
    return Job(job_id, "name", "Succeeded", 1.0, 2.0, 3.0, 5, skipped, failed, None, role)


def test_a_pool_wants_each_finished_job_with_users_not_imported_once() -> None:
    reasons = PoolReasons()
    generation = object()
    jobs = [
        job("import-new", failed=3),
        job("import-clean", skipped=0),
        job("import-old", skipped=2),
        job("import-running")._replace(status="InProgress"),
    ]
    assert [j.job_id for j in reasons.wanted(jobs, generation)] == ["import-new", "import-old"]
    assert reasons.wanted(jobs, generation) == []  # waiting already
    reasons.record(JobReasons("import-new", {("failed", "other"): 3}, (), complete=True))
    reasons.record(JobReasons("import-new", {("failed", "other"): 3}, (), complete=True))
    view = reasons.view(generation)
    assert view.state == READING
    assert view.totals == {("failed", "other"): 3}  # recorded twice, counted once
    assert view.waiting == 1
    assert reasons.still_wanted("import-old", generation)
    reasons.turn(False)
    assert reasons.view(generation).state == OFF
    assert reasons.view(generation).waiting == 0
    assert not reasons.still_wanted("import-old", generation)  # a reload turned it off
    assert reasons.wanted([job("import-newest")], generation) == []


def test_a_pool_whose_latest_job_writes_no_log_says_so() -> None:
    reasons = PoolReasons()
    generation = object()
    assert reasons.wanted([job("import-b", role=None), job("import-a")], generation) == [
        job("import-a")
    ]
    assert reasons.view(generation).state == NO_LOG_ROLE


def test_a_refusal_holds_until_the_next_generation() -> None:
    reasons = PoolReasons()
    first, second = object(), object()
    reasons.wanted([job("import-a")], first)
    assert reasons.deny(first) is True
    assert reasons.deny(first) is False  # logged once
    assert reasons.view(first).state == DENIED
    assert reasons.wanted([job("import-a")], first) == []
    assert reasons.view(second).state == READING
    assert [j.job_id for j in reasons.wanted([job("import-a")], second)] == ["import-a"]


def test_stored_reasons_come_back_whole_and_unsound_ones_are_refused_whole() -> None:
    reasons = PoolReasons()
    reasons.name_read("real name")
    reasons.wanted([job("import-a")], None)
    tally = ReasonTally()
    tally.add(["[FAILED] Line Number 2 - Internal error.", "[SKIPPED] Line Number 3 - exists"])
    reasons.record(JobReasons("import-a", dict(tally.counts), tuple(tally.examples), False))
    stored = reasons.stored()
    restored = PoolReasons()
    restored.restore(stored)
    assert restored.stored() == stored
    assert restored.pool_name == "real name"
    assert set(restored.view(None).jobs) == {"import-a"}
    for broken in (
        {**stored, "totals": [["failed", "made_up_reason", 1]]},
        {**stored, "totals": [["failed", "other", -1]]},
        {**stored, "totals": [["failed", "other", "1"]]},
        {**stored, "jobs": [{**stored["jobs"][0], "examples": [[2, "failed", "nope", "x"]]}]},
        {**stored, "surprise": 1},
        ["not", "an", "object"],
    ):
        fresh = PoolReasons()
        with pytest.raises(ValueError, match="reasons"):
            fresh.restore(broken)
        assert fresh.stored() == {"pool_name": None, "totals": [], "jobs": []}


def test_only_jobs_the_history_keeps_are_kept_and_the_totals_never_go_down() -> None:
    reasons = PoolReasons()
    for job_id in ("import-a", "import-b"):
        reasons.record(JobReasons(job_id, {("skipped", "already_exists"): 2}, (), True))
    reasons.keep_only(["import-b"])
    view = reasons.view(None)
    assert set(view.jobs) == {"import-b"}
    assert view.totals == {("skipped", "already_exists"): 4}
    assert set(REASONS) >= {reason for _, reason in view.totals}


def test_why_a_read_was_given_up_is_kept_across_a_restart() -> None:
    reasons = PoolReasons()
    reasons.record(JobReasons("import-a", {}, (), complete=False, problem="ResourceNotFound: x"))
    restored = PoolReasons()
    restored.restore(orjson.loads(orjson.dumps(reasons.stored())))
    assert restored.view(None).jobs["import-a"].problem == "ResourceNotFound: x"


def test_a_row_given_twice_is_counted_once_and_an_outcome_never_past_the_job_s_users() -> None:
    tally = ReasonTally({"skipped": 2, "failed": 3})
    rows = [f"[FAILED] Line Number {n} - Internal error." for n in (2, 3, 2, 3, 9, 10, 11)]
    rows += [f"[SKIPPED] Line Number {n} - The user already exists." for n in (2, 2, 4)]
    tally.add(rows)
    assert tally.counts == {("failed", "internal_error"): 3, ("skipped", "already_exists"): 2}
    assert [e.line for e in tally.examples] == [2, 3, 9, 2, 4]


def test_lines_seen_are_a_bitmap_as_long_as_the_highest_line_and_bounded() -> None:
    seen = LinesSeen()
    assert [seen.first_time(line) for line in (500_000, 7, 500_000, 7, 8)] == [
        True,
        True,
        False,
        False,
        True,
    ]
    # past the bound a line is not remembered (the job's own counts still cap it)
    assert seen.first_time(MAX_LINE_SEEN) is True
    assert seen.first_time(MAX_LINE_SEEN) is True
    assert seen.first_time(MAX_LINE_SEEN - 1) is True
    assert seen.first_time(MAX_LINE_SEEN - 1) is False


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("token=abc123 password: 'hunter 2'", "token=<redacted> password: <redacted>"),
        ('client_secret = "s e c" api_key=K1', "client_secret = <redacted> api_key=<redacted>"),
        ("by AKIAIOSFODNN7EXAMPLE", "by <redacted>"),
        ("see https://AKIAIOSFODNN7EXAMPLE:pw@example.com/x", "see <url>"),
        ("user alice.b+x@example.co.uk failed", "user <redacted> failed"),
        ("phone +1 (555) 123-4567, 5551234567", "phone <redacted>, <redacted>"),
        (
            "Invalid attribute value for phone_number: Invalid phone number format.",
            "Invalid attribute value for phone_number: Invalid phone number format.",
        ),
        ("line 12 of 3 rows", "line 12 of 3 rows"),
    ],
)
def test_an_example_shows_no_user_data_nor_secret(text: str, shown: str) -> None:
    tally = ReasonTally()
    tally.add([f"[FAILED] Line Number 2 - {text}"])
    assert [example.text for example in tally.examples] == [shown]


def test_redacting_a_long_line_takes_one_reading() -> None:
    tally = ReasonTally()
    hostile = ["token" * 60_000, "1-" * 150_000, "a@" * 150_000, ("x" * 50 + "@") * 6_000]
    started = time.perf_counter()
    tally.add([f"[FAILED] Line Number {n} - {text}" for n, text in enumerate(hostile, 2)])
    assert time.perf_counter() - started < 2.0
    assert tally.users == 4
