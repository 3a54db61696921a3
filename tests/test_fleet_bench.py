"""The fleet benchmark's parts: its world moves as scripted, its measures read runs right."""

from __future__ import annotations

import math
import random

import pytest

from bench.fleet_bench import parse_plan, small_fleet
from bench.fleet_exporter import Answer, PoolView, config_text, read_answer
from bench.fleet_measures import (
    active_ages,
    all_ages,
    cold_start_seconds,
    false_failures,
    first_complete,
    held_between,
    new_job_sightings,
    wrong_values,
)
from bench.fleet_runs import Timing, full_read_calls
from bench.fleet_world import FleetSpec, NewJob, Story
from bench.limits_bench import busiest_window
from exporter.config.load import load_text
from exporter.demo.model import PoolCounts
from exporter.demo.service import SimulatedCognito

POOL = "eu-west-1_Fleet00000"
OTHER = "eu-west-1_Fleet00001"
USERS = {"imported": 10, "skipped": 1, "failed": 0}


def counts(succeeded: int, imported: int = 10, **active: int) -> PoolCounts:
    return PoolCounts({"Succeeded": succeeded, **active}, {**USERS, "imported": imported})


def view(pool_counts: PoolCounts, refreshed_at: float | None, success: float = 1.0) -> PoolView:
    return PoolView(success, refreshed_at, dict(pool_counts.statuses), dict(pool_counts.users))


def answer(sent: float, pools: dict[str, PoolView]) -> Answer:
    return Answer(sent, sent + 0.5, pools, {})


def test_the_fleet_kinds_are_disjoint_where_they_must_be() -> None:
    spec = FleetSpec(pools=100, full_pools=10, busy_pools=8, new_job_pools=5)
    assert len(spec.pool_ids()) == 100
    assert spec.busy_ids()[:2] == spec.full_ids()[:2]  # a quarter of the busy pools are full
    assert len(spec.busy_ids()) == 8
    assert not set(spec.new_job_ids()) & (set(spec.busy_ids()) | set(spec.full_ids()))
    assert spec.jobs_in(spec.full_ids()[0]) == 1000
    assert 1 <= spec.jobs_in(spec.new_job_ids()[0]) <= 40
    with pytest.raises(ValueError, match="pools for every kind"):
        FleetSpec(pools=10, full_pools=5, busy_pools=4, new_job_pools=2)


def test_a_story_creates_starts_imports_and_finishes_a_job() -> None:
    model = SimulatedCognito()
    model.add_pool(POOL, "fleet", spawning=False)
    story = Story(POOL, busy=False, draw=random.Random(3))  # noqa: S311 - seeded on purpose
    seen: list[object] = []
    while story.step(model, 1000.0 + len(seen)):
        seen.append(model.jobs(POOL)[0]["Status"])
        assert len(seen) < 50
    assert seen[0] == "Created"
    assert seen.index("Pending") < seen.index("InProgress")
    assert seen[-1] in ("Succeeded", "Failed")
    assert len(model.jobs(POOL)) == 1  # an idle pool's story ends after its one job
    final = model.counts(POOL)
    assert final.users["imported"] >= 200 * seen.count("InProgress") - 200


def test_a_busy_story_starts_another_job_after_one_finishes() -> None:
    model = SimulatedCognito()
    model.add_pool(POOL, "fleet", spawning=False)
    story = Story(POOL, busy=True, draw=random.Random(5))  # noqa: S311 - seeded on purpose
    story.start_importing(model, 900.0)
    for step in range(60):
        assert story.step(model, 1000.0 + step)
    assert len(model.jobs(POOL)) >= 3


def test_the_scrape_settings_are_compressed_with_the_ratios_kept() -> None:
    settings = Timing(scale=10).scrape_settings()
    assert settings["timeout"] == 2.5
    assert settings["requests_per_second"] == 100
    assert settings["pool_requests_per_second"] == 50
    assert settings["full_resync_interval"] == 60
    text = config_text("http://127.0.0.1:1", [POOL, OTHER], settings)
    config = load_text(text, "fleet")
    assert [pool.id for pool in config.pools] == [POOL, OTHER]
    assert config.scrape.account_rate(20) == 100
    assert load_text(config_text("http://127.0.0.1:1", [POOL], {}), "fleet").scrape.timeout == 25


def test_a_full_read_costs_its_pages_and_the_empty_page_after_the_token() -> None:
    assert full_read_calls(1000) == 21
    assert full_read_calls(1) == 2
    assert full_read_calls(51) == 3


def test_an_answer_is_read_per_pool() -> None:
    text = (
        f'cognito_user_import_scrape_success{{user_pool_id="{POOL}"}} 1.0\n'
        f'cognito_user_import_scrape_last_success_timestamp_seconds{{user_pool_id="{POOL}"}} 7.5\n'
        f'cognito_user_import_jobs{{status="Succeeded",user_pool_id="{POOL}"}} 3.0\n'
        f'cognito_user_import_jobs{{status="Failed",user_pool_id="{POOL}"}} 0.0\n'
        "# TYPE cognito_user_import_users counter\n"
        f'cognito_user_import_users_total{{outcome="imported",user_pool_id="{POOL}"}} 10.0\n'
        f'cognito_user_import_users_total{{outcome="skipped",user_pool_id="{POOL}"}} 1.0\n'
        f'cognito_user_import_users_total{{outcome="failed",user_pool_id="{POOL}"}} 0.0\n'
        f'cognito_user_import_scrape_success{{user_pool_id="{OTHER}"}} 0.0\n'
        'cognito_user_import_refresh_behind_seconds{account_id="1",region="eu-west-1"} 4.0\n'
        'cognito_user_import_api_errors_total{error_code="X",user_pool_id=""} 1.0\n'
    )
    read = read_answer(text, 1.0, 2.0)
    assert read.pools[POOL].counts() == counts(3)
    assert read.pools[POOL].refreshed_at == 7.5
    assert read.pools[OTHER].success == 0
    assert read.pools[OTHER].counts() is None
    assert read.region == {"refresh_behind_seconds": 4.0}
    assert set(read.pools) == {POOL, OTHER}


def test_ages_count_the_old_and_the_never_refreshed() -> None:
    answers = [
        answer(100.0, {POOL: view(counts(1), 95.0), OTHER: view(counts(1), None)}),
        answer(160.0, {POOL: view(counts(1), 95.0), OTHER: view(counts(1), 150.0)}),
    ]
    ages = all_ages(answers, [POOL, OTHER], bound=60.0)
    assert (ages.samples, ages.max_age, ages.over, ages.never) == (4, 65.0, 1, 1)
    assert ages.late_pools == {POOL, OTHER}
    assert first_complete(answers, [POOL, OTHER]) == 1
    assert cold_start_seconds(answers, [POOL, OTHER], started=90.0) == 60.0
    assert cold_start_seconds(answers[:1], [POOL, OTHER], started=90.0) == math.inf


def test_only_pools_showing_an_active_job_count_as_active() -> None:
    active, idle = counts(1, InProgress=1), counts(1)
    answers = [
        answer(140.0, {POOL: view(active, 130.0), OTHER: view(idle, 10.0)}),
        answer(200.0, {POOL: view(active, 150.0), OTHER: view(idle, 10.0)}),
        answer(260.0, {POOL: view(active, 150.0), OTHER: view(idle, 10.0)}),
    ]
    ages = active_ages(answers)
    # the first answer has no previous scrape to compare with; the last is a scrape late
    assert (ages.samples, ages.max_age, ages.over) == (2, 110.0, 1)
    assert ages.late_pools == {POOL}


def test_false_failures_count_pools_and_answers() -> None:
    answers = [
        answer(1.0, {POOL: view(counts(1), 1.0, success=0.0), OTHER: view(counts(1), 1.0)}),
        answer(2.0, {POOL: view(counts(1), 1.0, success=0.0)}),
    ]
    assert false_failures(answers) == {POOL: 2}


def test_a_new_job_is_seen_when_its_pool_serves_more_jobs() -> None:
    versions = {POOL: [(0.0, counts(2))]}
    answers = [
        answer(100.0, {POOL: view(counts(2), 90.0)}),
        answer(160.0, {POOL: view(counts(2, Created=1), 150.0)}),
    ]
    sightings = new_job_sightings(answers, [NewJob(POOL, 120.0)], versions)
    assert (sightings[0].refreshed_after, sightings[0].answered_after) == (30.0, 40.5)
    never = new_job_sightings(answers[:1], [NewJob(POOL, 120.0)], versions)
    assert never[0].refreshed_after == math.inf


def test_the_busiest_window_is_half_open() -> None:
    assert busiest_window([], 1.0) == 0
    assert busiest_window([0.0, 0.5, 1.0, 1.5, 2.0], 1.0) == 2
    assert busiest_window([0.0, 0.05, 0.099, 0.1], 0.1) == 3


def test_a_value_must_be_one_the_pool_held_around_its_refresh() -> None:
    history = [(0.0, counts(1)), (100.0, counts(2)), (200.0, counts(3))]
    assert held_between(history, 50.0, 60.0) == [counts(1)]
    assert held_between(history, 95.0, 105.0) == [counts(1), counts(2)]
    versions = {POOL: history}
    # a read resumed over scrapes: what the pool held since its previous refresh
    right = [
        answer(150.0, {POOL: view(counts(2), 140.0)}),
        answer(250.0, {POOL: view(counts(2), 230.0)}),
        answer(300.0, {POOL: view(counts(3), 290.0)}),
    ]
    assert wrong_values(right, versions, slack=5.0) == []
    older_than_the_previous_refresh = [
        answer(150.0, {POOL: view(counts(2), 140.0)}),
        answer(250.0, {POOL: view(counts(1), 230.0)}),
    ]
    assert wrong_values(older_than_the_previous_refresh, versions, slack=5.0) == [
        f"answer 1: {POOL} serves {counts(1)}, which it did not hold between its last two refreshes"
    ]
    never_held = [answer(150.0, {POOL: view(counts(7), 140.0)})]
    assert len(wrong_values(never_held, versions, slack=5.0)) == 1
    going_down = [
        answer(250.0, {POOL: view(counts(3, imported=20), 240.0)}),
        answer(260.0, {POOL: view(counts(3, imported=10), 250.0)}),
    ]
    versions[POOL].append((230.0, counts(3, imported=20)))
    versions[POOL].append((255.0, counts(3, imported=10)))
    problems = wrong_values(going_down, versions, slack=5.0)
    assert problems == [f"answer 1: {POOL} users_total imported went down"]


def test_presets_and_overrides() -> None:
    plan, json_path = parse_plan([])
    assert (plan.spec.pools, plan.spec.full_pools, plan.scale, plan.small_pools) == (
        1000,
        50,
        10,
        20,
    )
    assert json_path is None
    plan, json_path = parse_plan(["--ci", "--pools", "200", "--small-pools", "0", "--json", "x"])
    assert (plan.spec.pools, plan.scale, plan.small_pools, json_path) == (200, 30, 0, "x")
    for wrong in (
        ["--pools", "10"],
        ["--pools", "0"],
        ["--full-pools", "-1"],
        ["--scale", "0"],
        ["--minutes", "-5"],
        ["--scale", "inf"],
        ["--scale", "1000"],
        ["--small-scrapes", "0"],
        ["--small-pools", "-1"],
    ):
        with pytest.raises(SystemExit):
            parse_plan(wrong)


@pytest.mark.parametrize("pools", [1, 2, 3, 4, 5, 20])
def test_a_small_fleet_of_any_size_has_a_full_pool(pools: int) -> None:
    spec = small_fleet(pools)
    assert spec.pools == pools
    assert spec.full_pools == 1
    assert len(spec.busy_ids()) == spec.busy_pools <= 3


@pytest.mark.parametrize(
    "text",
    [
        "garbage here\n",
        f'cognito_user_import_jobs{{user_pool_id="{POOL}"}} 3.0\n',
        f'cognito_user_import_users_total{{user_pool_id="{POOL}"}} 3.0\n',
        f'cognito_user_import_scrape_success{{user_pool_id="{POOL}"}} many\n',
        f'cognito_user_import_users_total{{user_pool_id="{POOL}",outcome="failed"}} +Inf\n',
        f'cognito_user_import_users_total{{user_pool_id="{POOL}",outcome="failed"}} NaN\n',
    ],
)
def test_an_answer_not_in_the_format_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]+$"):
        read_answer(text, 1.0, 2.0)
