"""When pools are refreshed: every pool at every scrape while the budget affords it, otherwise
active pools at scrapes and the others in the background by age, full re-reads stretched to
what the budget leaves. Pure: standings in, choices out."""

from __future__ import annotations

import io
import math

from prometheus_client import CollectorRegistry

from exporter.collect.attempts import AccountRegion
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.schedule import (
    EARLY_SHARE,
    FULL_SHARE,
    IDLE_PERIOD,
    MAX_FULL_RESYNC_SECONDS,
    RECENT_PERIOD,
    RefreshPlanner,
    Standing,
)
from exporter.config.schema import Scrape

ACCOUNT = AccountRegion("111122223333", "eu-west-1")
OTHER = AccountRegion("444455556666", "eu-west-1")
WALL = 1_800_000_000.0
WINDOW = 9.5  # Prometheus' default 10 s timeout, less the offset


def standing(
    *,
    attempted_at: float | None = 0.0,
    active: bool = False,
    last_change: float | None = WALL - 86400,
    calls: int = 1,
    full_calls: int = 2,
    since: float = 0.0,
    account: AccountRegion = ACCOUNT,
) -> Standing:
    return Standing(account, since, attempted_at, active, last_change, calls, full_calls)


def planner(rate: float = 10.0, **scrape: object) -> tuple[RefreshPlanner, ExporterMetrics]:
    metrics = ExporterMetrics(CollectorRegistry(), "test")
    made = RefreshPlanner(lambda account: rate, metrics, wall_clock=lambda: WALL)
    made.configure(Scrape.model_validate(scrape))
    return made, metrics


def gauge(metrics: ExporterMetrics, name: str, account: AccountRegion = ACCOUNT) -> float | None:
    instrument = metrics.refresh_behind if name == "behind" else metrics.full_resync_interval
    for family in instrument.collect():
        for sample in family.samples:
            if sample.labels == {"account_id": account.account, "region": account.region}:
                return sample.value
    return None


def test_a_fleet_the_budget_affords_at_every_scrape_is_refreshed_whole_at_every_scrape() -> None:
    plan, metrics = planner()
    pools = [(f"pool-{index}", standing(calls=2)) for index in range(20)]
    for scrape in range(3):
        now = 60.0 * scrape
        assert plan.for_scrape(pools, WINDOW, now) == [name for name, _ in pools]
        assert plan.in_background(pools, now + 30) == ([], None)
    assert not plan.background_needed
    assert gauge(metrics, "behind") == 0
    assert gauge(metrics, "interval") == 600


def test_a_large_region_refreshes_active_pools_at_scrapes_and_the_rest_by_age() -> None:
    plan, _ = planner(max_staleness="5m")
    idle = [(f"idle-{index}", standing(attempted_at=float(index))) for index in range(200)]
    active = [("active", standing(attempted_at=250.0, active=True))]
    fresh = [("new", standing(attempted_at=None, since=250.0))]
    pools = idle + active + fresh
    assert plan.for_scrape(pools, WINDOW, 250.0) == ["active"]
    assert plan.background_needed
    # an idle pool read at t falls due at t + 225 s; the pool never read at once
    due_at = 300 * IDLE_PERIOD
    ready, next_due = plan.in_background(pools, 250.0)
    # pools due within EARLY_SHARE of max_staleness are taken now: the fleet is looked at
    # once in that long, not at every refresh
    soon = 250.0 + 300 * EARLY_SHARE
    expected_idle = [name for name, s in idle if (s.attempted_at or 0) + due_at <= soon]
    assert ready[: len(expected_idle) - 6] == expected_idle[: len(expected_idle) - 6]
    assert sorted(ready) == sorted([*expected_idle, "new"])
    assert next_due == len(expected_idle) + due_at
    # the most overdue first
    later, _ = plan.in_background(pools, 400.0)
    assert later[:3] == ["idle-0", "idle-1", "idle-2"]


def test_a_pool_whose_jobs_moved_lately_is_refreshed_sooner_than_an_idle_one() -> None:
    plan, _ = planner(max_staleness="5m")
    crowd = [(f"idle-{index}", standing(attempted_at=1000.0)) for index in range(200)]
    recent = ("recent", standing(attempted_at=1000.0, last_change=WALL - 600))
    plan.for_scrape([*crowd, recent], WINDOW, 1000.0)
    at_recent_period = 1000.0 + 300 * RECENT_PERIOD
    assert plan.in_background([*crowd, recent], at_recent_period) == (
        ["recent"],
        1000.0 + 300 * IDLE_PERIOD,
    )


def test_full_rereads_the_budget_cannot_afford_are_stretched_and_said_once(
    log_stream: io.StringIO,
) -> None:
    plan, metrics = planner(max_staleness="5m", full_resync_interval="10m")
    # 1,000 pools of 1,000 jobs: 21 calls a full read, 21,000 every 10 minutes = 35/s
    pools = [(f"pool-{index}", standing(full_calls=21)) for index in range(1000)]
    for now in (0.0, 60.0, 120.0):
        plan.for_scrape(pools, WINDOW, now)
    fresh = 1000 / (300 * IDLE_PERIOD)
    stretched = math.ceil(21000 / ((10 - fresh) * FULL_SHARE))
    assert gauge(metrics, "interval") == stretched
    assert plan.full_resync_interval(ACCOUNT) == stretched
    assert 2 * 3600 < stretched < 2.5 * 3600
    assert log_stream.getvalue().count("full re-reads are stretched") == 1
    # a smaller fleet affords them again: said once too
    plan.for_scrape(pools[:100], WINDOW, 180.0)
    assert plan.full_resync_interval(ACCOUNT) == 600
    assert log_stream.getvalue().count("full re-reads are back to full_resync_interval") == 1


def test_a_region_that_cannot_keep_every_pool_fresh_says_so_once_and_shows_how_far_behind(
    log_stream: io.StringIO,
) -> None:
    plan, metrics = planner(rate=1.0, max_staleness="5m")
    pools = [(f"pool-{index}", standing(attempted_at=float(index))) for index in range(600)]
    for now in (400.0, 460.0, 520.0):
        plan.for_scrape(pools, WINDOW, now)
    assert gauge(metrics, "behind") == 520.0 - 0.0 - 300
    assert log_stream.getvalue().count("pools cannot all be kept within max_staleness") == 1
    # freshness alone takes more than the budget: full re-reads are put off as far as they go
    assert plan.full_resync_interval(ACCOUNT) == MAX_FULL_RESYNC_SECONDS
    caught_up = [(name, standing(attempted_at=600.0)) for name, _ in pools]
    plan.for_scrape(caught_up, WINDOW, 620.0)
    assert gauge(metrics, "behind") == 0
    assert log_stream.getvalue().count("every pool is within max_staleness again") == 1


def test_regions_are_planned_apart_and_a_region_gone_loses_its_series() -> None:
    plan, metrics = planner()
    large = [(f"a-{index}", standing()) for index in range(200)]
    small = [(f"b-{index}", standing(account=OTHER)) for index in range(5)]
    chosen = plan.for_scrape(large + small, WINDOW, 10.0)
    assert chosen == [name for name, _ in small]
    assert gauge(metrics, "interval", OTHER) == 600
    plan.for_scrape(large, WINDOW, 70.0)
    assert gauge(metrics, "interval", OTHER) is None


def test_a_probe_refreshes_a_pool_of_a_large_region_only_when_it_is_due() -> None:
    plan, _ = planner(max_staleness="5m")
    pools = [(f"pool-{index}", standing(attempted_at=100.0)) for index in range(200)]
    plan.for_scrape(pools, WINDOW, 100.0)
    idle = standing(attempted_at=100.0)
    assert not plan.due_for_probe(idle, 100.0 + 60)
    assert plan.due_for_probe(idle, 100.0 + 300 * IDLE_PERIOD)
    assert plan.due_for_probe(standing(attempted_at=100.0, active=True), 101.0)
    # a region of few pools: every probe refreshes, as before
    assert plan.due_for_probe(standing(account=OTHER, attempted_at=100.0), 101.0)


def test_probes_alone_refresh_at_every_probe_until_their_rate_outgrows_the_budget() -> None:
    plan, _ = planner(rate=10.0, max_staleness="5m")
    # ten probes a second of pools read a second ago, never a /metrics scrape: the first
    # minute's count reaches 0.8 of the budget (8 a second over 60 s) at the 480th
    refreshed = [
        plan.due_for_probe(standing(attempted_at=index / 10 - 1), index / 10)
        for index in range(600)
    ]
    assert refreshed == [True] * 480 + [False] * 120
    assert plan.due_for_probe(standing(attempted_at=59.0, active=True), 60.0)


def test_a_region_probed_alone_past_its_budget_gets_its_full_rereads_stretched_too() -> None:
    plan, metrics = planner(rate=10.0, max_staleness="5m", full_resync_interval="10m")
    pools = [standing(attempted_at=float(index) / 10, full_calls=21) for index in range(600)]
    for index, probed in enumerate(pools):
        plan.due_for_probe(probed, index / 10)
    plan.assess(pools, 60.0)
    fresh = 600 / (300 * IDLE_PERIOD)
    assert gauge(metrics, "interval") == math.ceil(600 * 21 / ((10 - fresh) * FULL_SHARE))
    assert gauge(metrics, "behind") == 0


def test_an_ha_pair_scraping_a_moment_apart_does_not_make_full_rereads_flap(
    log_stream: io.StringIO,
) -> None:
    plan, metrics = planner()
    pools = [(f"pool-{index}", standing(full_calls=21)) for index in range(20)]
    intervals = set()
    for minute in range(10):
        for offset in (0.0, 0.3):  # two Prometheus servers, 0.3 s apart, once a minute
            plan.for_scrape(pools, WINDOW, 60.0 * minute + offset)
            intervals.add(gauge(metrics, "interval"))
    assert intervals == {600}
    assert "stretched" not in log_stream.getvalue()


def test_the_background_keeps_to_pools_while_metrics_is_scraped() -> None:
    plan, _ = planner(max_staleness="5m")
    pools = [(f"pool-{index}", standing(attempted_at=None)) for index in range(200)]
    plan.for_scrape(pools, WINDOW, 0.0)
    assert len(plan.in_background(pools, 10.0)[0]) == 200
    # a replica whose /metrics was read once, then only probed: nothing in the background
    assert plan.in_background(pools, 301.0) == ([], None)


def test_catching_up_is_said_once_for_each_time_falling_behind_was_said(
    log_stream: io.StringIO,
) -> None:
    plan, _ = planner(rate=1.0, max_staleness="5m")
    behind = [(f"pool-{index}", standing(attempted_at=0.0)) for index in range(600)]
    for episode in range(3):
        start = 1000.0 * episode
        plan.for_scrape([(n, standing(attempted_at=start)) for n, _ in behind], WINDOW, start)
        plan.for_scrape([(n, standing(attempted_at=start)) for n, _ in behind], WINDOW, start + 400)
        plan.for_scrape(
            [(n, standing(attempted_at=start + 450)) for n, _ in behind], WINDOW, start + 460
        )
    text = log_stream.getvalue()
    # said again only an hour (12 max_stalenesses) after it was last said
    assert text.count("pools cannot all be kept within max_staleness") == 1
    assert text.count("every pool is within max_staleness again") == 1


def test_probes_before_any_scrape_assess_with_the_default_interval() -> None:
    plan, metrics = planner()
    plan.assess([standing(full_calls=21) for _ in range(20)], 5.0)
    assert gauge(metrics, "interval") == 600
