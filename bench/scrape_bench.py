"""How fast, how frugal and how polite a scrape is: the exporter against the simulator.

    python -m bench.scrape_bench [--small | --large] [--pools N --jobs M --latency S ...]

Runs a cold scrape (nothing known yet), steady-state scrapes (histories in place), a
steady-state scrape under a low request rate, and, beside them, the sequential baseline and a
CPU-per-page comparison with a default boto3 client. Every result is checked against the
simulator's own view of the pools; the exit status is 1 only when a result is wrong (a pool
failed or a count differs). Targets are reported as PASS or FAIL and never change it.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.processes import (
    PAGE_SIZE,
    CallCounts,
    Child,
    CpuComparison,
    CpuPerPageService,
    ExporterService,
    ExporterSettings,
    ScrapeMeasure,
    SequentialMeasure,
    SequentialService,
    SimulatorService,
)
from bench.world import WorldSpec
from exporter.cognito.jobs import SERVICE_PAGE_JOBS
from exporter.demo.model import PoolCounts

COLD_BOUND_FACTOR = 1.3
SEQUENTIAL_SPEEDUP = 15.0
STEADY_CALLS_PER_POOL = (1.0, 1.05)
CPU_PER_PAGE_SHARE = 0.5
STEADY_RSS_MB = 150.0
RATE_WINDOW_SECONDS = 1.0
MAX_CONFIG_RATE = 10_000.0
CPU_CONTENDER_JUDGED = "exporter client"
CPU_BASELINE = "boto3 default client"


@dataclass(frozen=True)
class Plan:
    mode: str
    pools: int
    jobs: int
    latency: float
    concurrency: int
    requests_per_second: float
    pool_requests_per_second: float
    timeout: float
    steady_scrapes: int
    repeats: int
    rate_limited_rps: float
    cpu_pages: int
    sequential: bool
    seed: int

    @property
    def pages_per_pool(self) -> int:
        return max(1, math.ceil(self.jobs / min(PAGE_SIZE, SERVICE_PAGE_JOBS)))

    def exporter_settings(self, requests_per_second: float | None = None) -> ExporterSettings:
        rate = requests_per_second or self.requests_per_second
        calls_at_that_rate = self.pools / rate
        return ExporterSettings(
            concurrency=self.concurrency,
            requests_per_second=rate,
            pool_requests_per_second=self.pool_requests_per_second,
            timeout=max(self.timeout, 2 * calls_at_that_rate + 10),
        )


PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "pools": 60,
        "jobs": 200,
        "latency": 0.05,
        "timeout": 60.0,
        "rate_limited_rps": 20.0,
        "cpu_pages": 300,
        "sequential": True,
        "repeats": 3,
    },
    "small": {
        "pools": 5,
        "jobs": 130,
        "latency": 0.005,
        "timeout": 30.0,
        "rate_limited_rps": 2.0,
        "cpu_pages": 50,
        "sequential": True,
        "repeats": 1,
    },
    "large": {
        "pools": 1000,
        "jobs": 1000,
        "latency": 0.05,
        "timeout": 240.0,
        "rate_limited_rps": 20.0,
        "cpu_pages": 0,
        "sequential": False,
        "repeats": 1,
    },
}
COMMON = {
    "concurrency": 32,
    "requests_per_second": MAX_CONFIG_RATE,
    "pool_requests_per_second": MAX_CONFIG_RATE,
    "steady_scrapes": 3,
    "seed": 1,
}


@dataclass
class Row:
    """One scrape as the table shows it."""

    name: str
    wall_seconds: float
    api_calls: int
    pools: int
    pools_called: int
    cpu_seconds: float
    peak_rss_mb: float
    rss_mb: float | None
    critical_path_seconds: float | None
    quota_bound_seconds: float | None
    pools_exact: int
    full_scans: int | None = None
    cached: bool = False
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def calls_per_pool(self) -> float:
        return self.api_calls / self.pools if self.pools else 0.0

    @property
    def bound_seconds(self) -> float | None:
        bounds = [b for b in (self.critical_path_seconds, self.quota_bound_seconds) if b]
        return max(bounds) if bounds else None

    def as_json(self) -> dict[str, Any]:
        return {
            **{key: value for key, value in asdict(self).items() if key != "extra"},
            **self.extra,
            "calls_per_pool": self.calls_per_pool,
            "bound_seconds": self.bound_seconds,
        }


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    limit: str
    passed: bool


@dataclass
class Report:
    plan: Plan
    populate_seconds: float = 0.0
    rows: dict[str, Row] = field(default_factory=dict)
    cold_runs: list[Row] = field(default_factory=list)
    steady_runs: list[Row] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)
    cpu: CpuComparison | None = None
    targets: list[Target] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "plan": asdict(self.plan),
            "populate_seconds": self.populate_seconds,
            "scrapes": {key: row.as_json() for key, row in self.rows.items()},
            "runs": {
                "cold": [row.as_json() for row in self.cold_runs],
                "steady": [row.as_json() for row in self.steady_runs],
            },
            "load_average_before_after": self.load_average,
            "cpu_per_page": None if self.cpu is None else asdict(self.cpu),
            "targets": [asdict(target) for target in self.targets],
            "correct": self.correct,
            "problems": self.problems,
        }


# ----- running -----


def run(plan: Plan) -> Report:
    report = Report(plan, load_average=list(os.getloadavg()))
    spec = WorldSpec(pools=plan.pools, jobs=plan.jobs, seed=plan.seed)
    pool_ids = spec.pool_ids()
    simulator = Child("simulator", SimulatorService, spec)
    try:
        url: str = simulator.ask("url")
        report.populate_seconds = simulator.ask("populate_seconds")
        truth: dict[str, PoolCounts] = simulator.ask("truth")
        simulator.ask("set_latency", plan.latency)
        if plan.sequential:
            _run_sequential(report, simulator, url, pool_ids, truth)
        _run_exporter(report, simulator, url, pool_ids, truth)
        if plan.cpu_pages > 0:
            simulator.ask("set_latency", 0.0)
            report.cpu = _once(CpuPerPageService, "run", url, pool_ids[0], plan.cpu_pages)
    finally:
        simulator.stop()
    report.load_average += os.getloadavg()
    report.targets = judge(report)
    return report


def _once(factory: Any, command: str, *args: object) -> Any:
    child = Child(factory.__name__, factory)
    try:
        return child.ask(command, *args)
    finally:
        child.stop()


def _run_sequential(
    report: Report, simulator: Child, url: str, pool_ids: list[str], truth: dict[str, PoolCounts]
) -> None:
    simulator.ask("reset_calls")
    measure: SequentialMeasure = _once(SequentialService, "run", url, pool_ids)
    calls: CallCounts = simulator.ask("list_calls")
    exact = sum(1 for pool_id in pool_ids if measure.counts.get(pool_id) == truth[pool_id])
    if exact != len(pool_ids):
        report.problems.append(f"sequential: {len(pool_ids) - exact} pools differ from the truth")
    report.rows["sequential"] = Row(
        name="sequential boto3",
        wall_seconds=measure.wall_seconds,
        api_calls=calls.total,
        pools=len(pool_ids),
        pools_called=len(calls.by_pool),
        cpu_seconds=measure.cpu_seconds,
        peak_rss_mb=measure.peak_rss_mb,
        rss_mb=None,
        critical_path_seconds=_pages(calls) * report.plan.latency * len(pool_ids),
        quota_bound_seconds=None,
        pools_exact=exact,
    )


def _run_exporter(
    report: Report, simulator: Child, url: str, pool_ids: list[str], truth: dict[str, PoolCounts]
) -> None:
    """`repeats` fresh exporter processes, each scraped cold and then in the steady state; the
    table shows the median run of each kind, the JSON every run."""
    plan = report.plan
    limited: Row | None = None
    for repeat in range(1, plan.repeats + 1):
        exporter = Child("exporter", ExporterService, url, pool_ids, plan.exporter_settings())
        try:
            row = _scrape(report, f"cold #{repeat}", simulator, exporter, truth, plan)
            report.cold_runs.append(row)
            for index in range(1, plan.steady_scrapes + 1):
                name = f"steady #{repeat}.{index}"
                report.steady_runs.append(_scrape(report, name, simulator, exporter, truth, plan))
            if repeat == plan.repeats and plan.rate_limited_rps > 0:
                limited = _rate_limited(report, simulator, exporter, truth)
        finally:
            exporter.stop()
    if report.cold_runs:
        report.rows["cold"] = replace(median_run(report.cold_runs), name="exporter cold")
    if report.steady_runs:
        report.rows["steady"] = replace(median_run(report.steady_runs), name="exporter steady")
    if limited is not None:
        report.rows["rate_limited"] = limited


def _rate_limited(
    report: Report, simulator: Child, exporter: Child, truth: dict[str, PoolCounts]
) -> Row:
    plan = report.plan
    exporter.ask("reconfigure", plan.exporter_settings(plan.rate_limited_rps))
    limited = replace(plan, requests_per_second=plan.rate_limited_rps)
    name = f"steady @ {plan.rate_limited_rps:g} rps"
    row = _scrape(report, name, simulator, exporter, truth, limited)
    row.name = f"exporter {name}"
    times: list[float] = sorted(simulator.ask("list_call_times"))
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    row.extra["requests_per_second"] = plan.rate_limited_rps
    row.extra["max_requests_in_any_second"] = max_in_window(times, RATE_WINDOW_SECONDS)
    row.extra["min_gap_ms"] = min(gaps, default=0.0) * 1000
    row.extra["mean_rate"] = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0
    return row


def median_run(rows: Sequence[Row]) -> Row:
    """The run with the median wall time (the lower one of an even count): a real run, so its
    calls, CPU and RSS belong together."""
    ordered = sorted(rows, key=lambda row: row.wall_seconds)
    return ordered[(len(ordered) - 1) // 2]


def _scrape(
    report: Report,
    name: str,
    simulator: Child,
    exporter: Child,
    truth: dict[str, PoolCounts],
    plan: Plan,
) -> Row:
    simulator.ask("reset_calls")
    measure: ScrapeMeasure = exporter.ask("scrape")
    calls: CallCounts = simulator.ask("list_calls")
    exact = 0
    for pool_id, expected in truth.items():
        pool = measure.pools.get(pool_id)
        if pool is None or not pool.success:
            code = "missing" if pool is None else pool.error_code
            report.problems.append(f"{name}: pool {pool_id} failed ({code})")
        elif pool.counts != expected:
            report.problems.append(f"{name}: pool {pool_id} counts {pool.counts} != {expected}")
        else:
            exact += 1
    pools = len(truth)
    return Row(
        name=name,
        wall_seconds=measure.wall_seconds,
        api_calls=calls.total,
        pools=pools,
        pools_called=sum(1 for pool_id in truth if calls.by_pool.get(pool_id, 0) > 0),
        cpu_seconds=measure.cpu_seconds,
        peak_rss_mb=measure.peak_rss_mb,
        rss_mb=measure.rss_mb,
        critical_path_seconds=critical_path(_pages(calls), plan.latency, pools, plan.concurrency),
        quota_bound_seconds=quota_bound(calls, plan),
        pools_exact=exact,
        full_scans=sum(1 for pool in measure.pools.values() if pool.full),
        cached=measure.cached,
    )


def _pages(calls: CallCounts) -> int:
    return max(calls.by_pool.values(), default=0)


def critical_path(pages_per_pool: int, latency: float, pools: int, concurrency: int) -> float:
    return pages_per_pool * latency * math.ceil(pools / concurrency)


def quota_bound(calls: CallCounts, plan: Plan) -> float:
    return max(
        calls.total / plan.requests_per_second, _pages(calls) / plan.pool_requests_per_second
    )


def max_in_window(times: Sequence[float], width: float) -> int:
    """The most calls in any window [t, t + width); the busiest window starts at a call."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, start + width) - index for index, start in enumerate(ordered)),
        default=0,
    )


# ----- judging -----


def judge(report: Report) -> list[Target]:
    targets = []
    rows = report.rows
    cold, sequential = rows.get("cold"), rows.get("sequential")
    if cold is not None and cold.critical_path_seconds:
        ratio = cold.wall_seconds / cold.critical_path_seconds
        targets.append(
            Target(
                "cold wall / critical path",
                ratio,
                f"<= {COLD_BOUND_FACTOR}",
                ratio <= COLD_BOUND_FACTOR,
            )
        )
    if cold is not None and sequential is not None:
        speedup = sequential.wall_seconds / cold.wall_seconds
        targets.append(
            Target(
                "sequential wall / cold wall",
                speedup,
                f">= {SEQUENTIAL_SPEEDUP}",
                speedup >= SEQUENTIAL_SPEEDUP,
            )
        )
    if report.steady_runs:
        low, high = STEADY_CALLS_PER_POOL
        worst = max(run.calls_per_pool for run in report.steady_runs)
        best = min(run.calls_per_pool for run in report.steady_runs)
        targets.append(
            Target(
                "steady API calls per pool (worst run)",
                worst,
                f"{low} .. {high}",
                low <= best and worst <= high,
            )
        )
        fresh = min(run.pools_called / run.pools for run in report.steady_runs)
        uncached = not any(run.cached for run in report.steady_runs)
        targets.append(
            Target("steady share of pools paged afresh", fresh, "== 1", fresh == 1 and uncached)
        )
    steady_rss = [run.rss_mb for run in report.steady_runs if run.rss_mb is not None]
    if steady_rss:
        worst_rss = max(steady_rss)
        targets.append(
            Target(
                "steady-state RSS MB (largest run)",
                worst_rss,
                f"<= {STEADY_RSS_MB:g}",
                worst_rss <= STEADY_RSS_MB,
            )
        )
    if report.cpu is not None:
        costs = report.cpu.costs
        share = costs[CPU_CONTENDER_JUDGED].cpu_ms / costs[CPU_BASELINE].cpu_ms
        targets.append(
            Target(
                "CPU per page, exporter / boto3",
                share,
                f"<= {CPU_PER_PAGE_SHARE}",
                share <= CPU_PER_PAGE_SHARE,
            )
        )
    limited = rows.get("rate_limited")
    if limited is not None:
        busiest = limited.extra["max_requests_in_any_second"]
        allowed = limited.extra["requests_per_second"]
        targets.append(
            Target(
                "requests in the busiest 1 s window", busiest, f"<= {allowed:g}", busiest <= allowed
            )
        )
    return targets


# ----- showing -----


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _loads(values: Sequence[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(report: Report) -> str:
    plan = report.plan
    header = (
        "scrape",
        "wall s",
        "API calls",
        "calls/pool",
        "CPU s",
        "peak RSS MB",
        "RSS MB",
        "crit path s",
        "quota s",
        "wall/bound",
        "exact pools",
    )
    lines = []
    for row in report.rows.values():
        bound = row.bound_seconds
        lines.append(
            (
                row.name,
                f"{row.wall_seconds:.3f}",
                str(row.api_calls),
                f"{row.calls_per_pool:.2f}",
                f"{row.cpu_seconds:.3f}",
                _mb(row.peak_rss_mb),
                _mb(row.rss_mb),
                _seconds(row.critical_path_seconds),
                _seconds(row.quota_bound_seconds),
                "-" if not bound else f"{row.wall_seconds / bound:.2f}",
                f"{row.pools_exact}/{row.pools}",
            )
        )
    widths = [max(len(line[i]) for line in (header, *lines)) for i in range(len(header))]

    def format_line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join((first, *rest))

    out = [
        f"scrape benchmark ({plan.mode}): {plan.pools} pools x {plan.jobs} jobs, "
        f"{plan.latency * 1000:g} ms per call, concurrency {plan.concurrency}, "
        f"{plan.requests_per_second:g} rps (per pool {plan.pool_requests_per_second:g}); "
        f"simulator populated in {report.populate_seconds:.1f} s",
        f"load average (1, 5, 15 min) before {_loads(report.load_average[:3])}, "
        f"after {_loads(report.load_average[3:])}; "
        f"exporter rows: median of {plan.repeats} fresh process(es), "
        f"{len(report.steady_runs)} steady scrape(s)",
        "",
        format_line(header),
        format_line(["-" * width for width in widths]),
        *(format_line(line) for line in lines),
    ]
    limited = report.rows.get("rate_limited")
    if limited is not None:
        out.append(
            f"  at {limited.extra['requests_per_second']:g} rps: busiest 1 s window held "
            f"{limited.extra['max_requests_in_any_second']:g} ListUserImportJobs calls, "
            f"mean rate {limited.extra['mean_rate']:.2f}/s, "
            f"closest two {limited.extra['min_gap_ms']:.1f} ms apart (simulator's arrival times)"
        )
    if report.cpu is not None:
        cpu = report.cpu
        out += [
            "",
            f"CPU per page ({cpu.pages_each} pages of {cpu.jobs_per_page} jobs each, "
            "zero latency, one thread):",
        ]
        baseline = cpu.costs[CPU_BASELINE].cpu_ms
        for name, cost in cpu.costs.items():
            out.append(
                f"  {name:<30} {cost.cpu_ms:7.3f} ms CPU  {cost.wall_ms:7.3f} ms wall"
                f"  {cost.cpu_ms / baseline:5.2f}x"
            )
    out += ["", "targets:"]
    for target in report.targets:
        verdict = "PASS" if target.passed else "FAIL"
        out.append(f"  {verdict}  {target.name}: {target.measured:.3f} (target {target.limit})")
    out.append("")
    if report.correct:
        out.append("results: every pool exact in every scrape")
    else:
        out.append(f"results WRONG ({len(report.problems)} problems):")
        out += [f"  {problem}" for problem in report.problems[:20]]
    return "\n".join(out)


# ----- the command line -----


def parse_plan(argv: Sequence[str] | None = None) -> tuple[Plan, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scrape_bench",
        description="Benchmark the exporter's scrape against the in-repo simulator.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help="5 pools x 130 jobs, 5 ms (for CI)")
    size.add_argument("--large", action="store_true", help="1000 pools x 1000 jobs, 50 ms")
    parser.add_argument("--pools", type=int, help="user pools (default 60)")
    parser.add_argument("--jobs", type=int, help="import jobs per pool (default 200)")
    parser.add_argument("--latency", type=float, help="seconds added to every call (0.05)")
    parser.add_argument("--concurrency", type=int, help="scrape.max_concurrency (32)")
    parser.add_argument("--rps", type=float, help="scrape.requests_per_second (10000, the max)")
    parser.add_argument("--pool-rps", type=float, help="scrape.pool_requests_per_second (10000)")
    parser.add_argument("--timeout", type=float, help="scrape.timeout in seconds")
    parser.add_argument("--steady-scrapes", type=int, help="steady-state scrapes per process (3)")
    parser.add_argument(
        "--repeats", type=int, help="fresh exporter processes, each scraped cold (3; 1 if large)"
    )
    parser.add_argument(
        "--rate-limited-rps", type=float, help="rate of the rate-limited scrape; 0 skips it (20)"
    )
    parser.add_argument("--cpu-pages", type=int, help="pages per client in the CPU comparison")
    parser.add_argument(
        "--sequential",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the sequential baseline (not by default with --large)",
    )
    parser.add_argument("--seed", type=int, help="seed of the simulated pools (1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    mode = "small" if args.small else "large" if args.large else "default"
    values: dict[str, Any] = {**COMMON, **PRESETS[mode]}
    for name, value in vars(args).items():
        key = {"rps": "requests_per_second", "pool_rps": "pool_requests_per_second"}.get(name, name)
        if key in values and value is not None:
            values[key] = value
    plan = Plan(mode=mode, **values)
    if not 0 < plan.requests_per_second <= MAX_CONFIG_RATE:
        parser.error(f"--rps must be above 0 and at most {MAX_CONFIG_RATE:g} (the config's range)")
    if min(plan.pools, plan.concurrency, plan.repeats) < 1 or plan.jobs < 0:
        parser.error("--pools, --concurrency and --repeats must be at least 1, --jobs at least 0")
    return plan, args.json


def main(argv: Sequence[str] | None = None) -> int:
    plan, json_path = parse_plan(argv)
    started = time.perf_counter()
    report = run(plan)
    print(table(report))
    print(f"\nbenchmark took {time.perf_counter() - started:.1f} s", flush=True)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as handle:
            json.dump(report.as_json(), handle, indent=2)
            handle.write("\n")
    return 0 if report.correct else 1


if __name__ == "__main__":
    sys.exit(main())
