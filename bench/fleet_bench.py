"""Large fleets under the real quota: every pool fresh within max_staleness, no failure that did
not happen, the budget spent evenly; and a small fleet refreshed at every scrape as before.

    python -m bench.fleet_bench          # 1,000 pools compressed x10 (about 4 minutes)
    python -m bench.fleet_bench --ci     # 120 pools compressed x30 (under a minute)

The large run is compressed in time: Prometheus' interval and timeout, max_staleness,
full_resync_interval, the simulator's latency and the rates all scaled by `--scale`, so the
ratios hold; figures are printed uncompressed. Every value served is checked against what the
pool held when it was refreshed; the exit status is 1 only when a value is wrong, never for a
missed target.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from bench.fleet_measures import (
    active_ages,
    all_ages,
    cold_start_seconds,
    false_failures,
    first_complete,
    new_job_sightings,
    served_counts,
    wrong_values,
)
from bench.fleet_runs import LargeRun, SmallRun, Timing, full_read_calls, run_large, run_small
from bench.fleet_world import FleetSpec
from bench.limits_bench import busiest_window
from exporter.config.schema import Scrape

SLACK_TIMEOUTS = 1.0  # how far from a refresh's stamp its reads may lie, in scrape timeouts


@dataclass(frozen=True)
class Plan:
    spec: FleetSpec
    scale: float
    minutes: float
    small_pools: int
    small_scrapes: int


PRESETS = {
    "default": Plan(
        FleetSpec(1000, 50, 20, 20), scale=10, minutes=25, small_pools=20, small_scrapes=4
    ),
    "ci": Plan(FleetSpec(120, 6, 4, 4), scale=30, minutes=8, small_pools=10, small_scrapes=2),
}


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def figure(
        self, run: str, name: str, measured: str, target: str = "", met: bool | None = None
    ) -> None:
        self.rows.append(
            {"run": run, "figure": name, "measured": measured, "target": target, "met": met}
        )

    def text(self) -> str:
        lines = []
        run = None
        for row in self.rows:
            if row["run"] != run:
                run = row["run"]
                lines.append(f"\n## {run}")
            verdict = {True: "met", False: "NOT MET", None: ""}[row["met"]]
            target = f"  [target {row['target']}: {verdict}]" if row["target"] else ""
            lines.append(f"  {row['figure']}: {row['measured']}{target}")
        lines.extend(f"  WRONG  {problem}" for problem in self.problems)
        return "\n".join(lines)


def report_large(run: LargeRun, report: Report) -> None:
    timing, spec = run.timing, run.spec
    name = (
        f"{spec.pools} pools ({spec.full_pools} full, {spec.busy_pools} busy, "
        f"{spec.new_job_pools} getting a new job), compressed x{timing.scale:g}"
    )
    real = timing.real
    pool_ids = spec.pool_ids()
    answers = run.answers
    warm = first_complete(answers, pool_ids)
    after_cold = answers[warm:] if warm is not None else []
    # the pools read first at the cold start fall due while others still wait for their first
    # read (which goes first: they have nothing to show): ages are held to max_staleness from
    # one max_staleness after every pool was read once
    settled = after_cold[0].sent + timing.wall(timing.max_staleness) if after_cold else 0.0
    steady = [answer for answer in after_cold if answer.sent >= settled]
    report.figure(name, "scrapes", f"{len(answers)} answered, {run.failed_scrapes} failed")
    report.problems.extend(run.unreadable)
    failures = false_failures(answers)
    report.figure(
        name,
        "pools reading scrape_success 0 (the simulator never fails)",
        f"{len(failures)} pools, {sum(failures.values())} pool-scrapes" + kinds_of(spec, failures),
        "0",
        not failures,
    )
    errors: Counter[str] = Counter()
    for view in answers[-1].pools.values() if answers else ():
        errors.update(view.errors)
    report.figure(name, "api_errors_total at the end", f"{dict(errors)}")
    took = sorted(answer.answered - answer.sent for answer in answers)
    if took:
        report.figure(
            name,
            "answer time of a scrape, as run (compressed)",
            f"median {took[len(took) // 2] * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms "
            f"(timeout {timing.wall(timing.timeout) * 1000:.0f} ms)",
        )
    cold = cold_start_seconds(answers, pool_ids, run.started)
    cold_calls = sum(full_read_calls(spec.jobs_in(pool_id)) for pool_id in pool_ids)
    report.figure(
        name,
        "cold start until every pool was refreshed once",
        f"{real(cold):.0f} s (the budget alone: {cold_calls} calls / {timing.budget:g}/s = "
        f"{cold_calls / timing.budget:.0f} s)",
    )
    served = served_counts(after_cold or answers)
    report.figure(
        name,
        "pools with values in an answer" + (" after the cold start" if after_cold else ""),
        f"min {min(served, default=0)}, max {max(served, default=0)}",
        f"{spec.pools}",
        bool(after_cold) and min(served) == spec.pools,
    )
    ages = all_ages(steady, pool_ids, timing.wall(timing.max_staleness))
    report.figure(
        name,
        "pool age at every scrape from one max_staleness after the cold start",
        f"max {real(ages.max_age):.0f} s over {ages.samples} pool-scrapes, {ages.over} older, "
        f"{ages.never} never refreshed" + kinds_of(spec, ages.late_pools),
        f"<= max_staleness {timing.max_staleness:g} s",
        bool(steady) and ages.over == 0 and ages.never == 0,
    )
    active = active_ages(steady)
    report.figure(
        name,
        "age of pools with an active job",
        f"max {real(active.max_age):.1f} s over {active.samples} pool-scrapes, {active.over} "
        "refreshed before the previous scrape" + kinds_of(spec, active.late_pools),
        f"<= one scrape ({timing.interval:g} s)",
        active.samples > 0 and active.over == 0 and active.never == 0,
    )
    sightings = new_job_sightings(answers, run.new_jobs, run.versions)
    refreshed = max((s.refreshed_after for s in sightings), default=math.inf)
    answered = max((s.answered_after for s in sightings), default=math.inf)
    report.figure(
        name,
        f"new job in an idle pool ({len(sightings)} jobs), read by a refresh within",
        f"{real(refreshed):.0f} s (shown by a scrape within {real(answered):.0f} s)",
        f"<= max_staleness {timing.max_staleness:g} s",
        bool(sightings) and refreshed <= timing.wall(timing.max_staleness),
    )
    busiest = busiest_window(run.arrivals, timing.wall(1.0))
    report.figure(
        name,
        "busiest second of ListUserImportJobs + DescribeUserImportJob at the simulator",
        f"{busiest} calls",
        f"<= budget {timing.budget:g}",
        busiest <= timing.budget,
    )
    ten = busiest_window(run.arrivals, timing.wall(10.0))
    report.figure(name, "busiest ten seconds", f"{ten} calls (the budget: {timing.budget * 10:g})")
    report_calls(run, steady, report, name)
    behind = [a.region.get("refresh_behind_seconds") for a in steady]
    shown = [value for value in behind if value is not None]
    report.figure(
        name,
        "refresh_behind_seconds after the cold start",
        f"max {real(max(shown)):.1f} s" if shown else "absent",
        "0",
        bool(shown) and max(shown) == 0,
    )
    interval = answers[-1].region.get("full_resync_interval_seconds") if answers else None
    report.figure(
        name,
        "full_resync_interval_seconds at the end",
        "absent" if interval is None else f"{real(interval):.0f} s",
        f"{timing.full_resync_interval:g} s configured",
    )
    report.figure(name, "warning and error lines logged", logged(run.warnings))
    slack = timing.wall(timing.timeout) * SLACK_TIMEOUTS
    report.problems.extend(wrong_values(answers, run.versions, slack))
    report_final(run, report, name, slack)


def kinds_of(spec: FleetSpec, pool_ids: Iterable[str]) -> str:
    """ "; 2 full busy; 1 small": how many of the pools are of each kind."""
    kinds = Counter(spec.kind_of(pool_id) for pool_id in pool_ids)
    return "".join(f"; {count} {kind}" for kind, count in sorted(kinds.items()))


def report_calls(run: LargeRun, steady: Sequence[Any], report: Report, name: str) -> None:
    """Calls a minute after the cold start, beside a design that refreshes every pool at every
    scrape, and what such a design reaches within one scrape at the budget."""
    timing, spec = run.timing, run.spec
    if steady:
        since = steady[0].sent
        calls = sum(1 for at in run.arrivals if since <= at <= run.activity_stopped)
        minutes = timing.real(run.activity_stopped - since) / 60
        measured = f"{calls / minutes:.0f} calls a minute" if minutes > 0 else "no time measured"
    else:
        measured = "no steady state reached"
    refresh_all = (
        spec.pools * 60 / timing.interval
        + sum(full_read_calls(spec.jobs_in(pool_id)) for pool_id in spec.pool_ids())
        * 60
        / timing.full_resync_interval
    )
    report.figure(
        name,
        "calls a minute after the cold start",
        f"{measured}; refreshing every pool at every scrape needs {refresh_all:.0f} "
        f"(the budget allows {timing.budget * 60:.0f})",
    )
    reach = timing.budget * (timing.timeout - timing.timeout_offset)
    report.figure(
        name,
        "the naive peer (every pool at every scrape, at the budget)",
        f"reaches {reach:.0f} pools a scrape; {max(0, spec.pools - reach):.0f} of "
        f"{spec.pools} read Timeout every scrape",
    )


def report_final(run: LargeRun, report: Report, name: str, slack: float) -> None:
    """After the quiet period every pool holds its final values; a pool refreshed since the
    activity stopped must serve them exactly."""
    last = run.answers[-1] if run.answers else None
    exact = stale = 0
    for pool_id, truth in run.truth.items():
        view = last.pools.get(pool_id) if last is not None else None
        counts = None if view is None else view.counts()
        if counts == truth:
            exact += 1
        elif (
            view is None
            or view.refreshed_at is None
            or (view.refreshed_at < run.activity_stopped + slack)
        ):
            stale += 1
        else:
            report.problems.append(f"last answer: {pool_id} serves {counts}, the truth is {truth}")
    report.figure(
        name,
        "pools equal to the truth after the quiet period",
        f"{exact} of {len(run.truth)} ({stale} not refreshed since the activity stopped)",
        "all",
        exact == len(run.truth),
    )


def logged(warnings: dict[str, int]) -> str:
    total = sum(warnings.values())
    return f"{total}" + "".join(f"; {count} x {message!r}" for message, count in warnings.items())


def report_small(run: SmallRun, report: Report) -> None:
    spec = run.spec
    steady = run.scrapes[1:]
    name = f"{spec.pools} pools at the default quota and timings, {len(steady)} steady scrapes"
    cold = run.scrapes[0]
    expected = {pool_id: full_read_calls(spec.jobs_in(pool_id)) for pool_id in spec.pool_ids()}
    report.figure(
        name,
        "cold scrape: calls a pool",
        f"{sum(cold.calls.values())} calls"
        + ("" if cold.calls == expected else ", not a full read each"),
        f"a full read each, {sum(expected.values())} calls",
        cold.calls == expected,
    )
    per_pool = sorted({calls for scrape in steady for calls in scrape.calls.values()})
    report.figure(
        name,
        "steady scrapes: ListUserImportJobs calls a pool a scrape",
        ", ".join(str(calls) for calls in per_pool),
        "1, as refreshing every pool at every scrape",
        per_pool == [1],
    )
    budget = Timing().budget
    busiest = busiest_window(run.arrivals, 1.0)
    report.figure(
        name,
        "busiest second of ListUserImportJobs + DescribeUserImportJob (all scrapes)",
        f"{busiest} calls",
        f"<= budget {budget:g}",
        busiest <= budget,
    )
    between = sum(scrape.calls_before for scrape in steady)
    report.figure(name, "calls between scrapes", f"{between}", "0", between == 0)
    equal = sum(
        1
        for scrape in run.scrapes
        for pool_id, truth in scrape.truth.items()
        if (view := scrape.answer.pools.get(pool_id)) is not None and view.counts() == truth
    )
    report.figure(
        name,
        "pools equal to the truth at their scrape",
        f"{equal} of {len(run.scrapes) * spec.pools} pool-scrapes",
        "all",
        equal == len(run.scrapes) * spec.pools,
    )
    report.figure(
        name, "warning and error lines logged", f"{len(run.warnings)}", "0", not run.warnings
    )
    report.problems.extend(
        wrong_values([s.answer for s in run.scrapes], run.versions, slack=Timing().timeout)
    )


def small_fleet(pools: int) -> FleetSpec:
    """One full pool, up to three busy ones, up to two that get a new job."""
    busy = max(0, min(3, pools - 3))
    return FleetSpec(pools, 1, busy, max(0, min(2, pools - 1 - busy)))


def parse_plan(argv: Sequence[str] | None) -> tuple[Plan, str | None]:
    parser = argparse.ArgumentParser(prog="bench.fleet_bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--ci", action="store_true", help="the CI size: 120 pools, x30, under a minute"
    )
    parser.add_argument("--pools", type=int)
    parser.add_argument("--full-pools", type=int)
    parser.add_argument("--busy-pools", type=int)
    parser.add_argument("--new-job-pools", type=int)
    parser.add_argument("--scale", type=float, help="time compression of the large run")
    parser.add_argument("--minutes", type=float, help="uncompressed minutes of activity")
    parser.add_argument("--small-pools", type=int, help="pools of the small run; 0 skips it")
    parser.add_argument("--small-scrapes", type=int)
    parser.add_argument("--json", dest="json_path")
    options = parser.parse_args(argv)
    preset = PRESETS["ci" if options.ci else "default"]
    scale = preset.scale if options.scale is None else options.scale
    minutes = preset.minutes if options.minutes is None else options.minutes
    small_pools = preset.small_pools if options.small_pools is None else options.small_pools
    small_scrapes = preset.small_scrapes if options.small_scrapes is None else options.small_scrapes
    if not (scale > 0 and minutes > 0 and math.isfinite(scale * minutes)):
        parser.error("--scale and --minutes must be finite and more than zero")
    try:
        Scrape.model_validate(Timing(scale=scale).scrape_settings())
    except ValidationError as error:
        first = error.errors()[0]
        parser.error(
            f"--scale {scale:g} puts scrape.{first['loc'][0]} out of bounds: {first['msg']}"
        )
    if small_pools < 0 or small_scrapes < 1:
        parser.error("--small-pools must be 0 or more, --small-scrapes 1 or more")
    spec = preset.spec
    try:
        spec = FleetSpec(
            options.pools if options.pools is not None else spec.pools,
            options.full_pools if options.full_pools is not None else spec.full_pools,
            options.busy_pools if options.busy_pools is not None else spec.busy_pools,
            options.new_job_pools if options.new_job_pools is not None else spec.new_job_pools,
        )
    except ValueError as error:
        parser.error(str(error))
    plan = Plan(spec, scale, minutes, small_pools, small_scrapes)
    return plan, options.json_path


def main(argv: Sequence[str] | None = None) -> int:
    plan, json_path = parse_plan(argv)
    report = Report()
    report_large(run_large(plan.spec, Timing(scale=plan.scale), plan.minutes), report)
    if plan.small_pools:
        report_small(run_small(small_fleet(plan.small_pools), plan.small_scrapes), report)
    print(report.text())
    correct = not report.problems
    print("\nresults: " + ("every value served was one its pool held" if correct else "WRONG"))
    if json_path:
        with open(json_path, "w", encoding="utf-8") as out:
            json.dump({"correct": correct, "plan": asdict(plan), **asdict(report)}, out, indent=1)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
