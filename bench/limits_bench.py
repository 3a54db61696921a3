"""The exporter at the real service's limits, beside the naive sequential peer.

Four scenarios against the simulator over real HTTP, each in a fresh world:

- **full pools**: 1,000-job pools answered 50 jobs a page with a token on the last page, read
  with the default config (only endpoint and credentials set): exact, then 1 call a pool.
- **restart**: the first scrape of a new process after a cold read and a few jobs added,
  with `--storage.path` and without it.
- **deep active jobs**: three active jobs deep in each pool (a Created job waiting under a busy
  pool, long imports); a steady scrape pages to the newest known job and describes the deep
  ones, or pages down to them, whichever is cheaper.
- **auto budget**: two credential sets of one account whose provisioned rate is 40 requests/s,
  `requests_per_second: auto` with `quota_share: 0.5`: the busiest one-second window of
  calls across both sets.

```
.venv/bin/python -m bench.limits_bench            # 6 pools x 1000 jobs
.venv/bin/python -m bench.limits_bench --pools 20 --json limits.json
```

It exits 1 when a result is wrong; a target missed is reported, never a failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.sequential import scrape_sequentially
from bench.world import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, counts_of
from exporter.app import Runtime
from exporter.cognito.jobs import SERVICE_PAGE_JOBS
from exporter.config.load import load_text
from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from exporter.logs import configure

ACCOUNT = "111122223333"
HIGH_QUOTA = 10_000  # for the scenarios where the quota is not what is measured
BUDGET_QUOTA = 40
QUOTA_SHARE = 0.5
DEEP_POSITIONS = (150, 500, 950)  # how many newer jobs sit above each deep active job
RESTART_CALLS_PER_POOL = 1.05
JOB_SPACING = 600.0


@dataclass
class Scenario:
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def row(self, side: str, calls: int, pools: int, **extra: Any) -> None:
        self.rows.append({"side": side, "calls": calls, "calls_per_pool": calls / pools, **extra})

    def target(self, text: str, met: bool, measured: str) -> None:
        self.targets.append({"target": text, "met": met, "measured": measured})


@contextmanager
def simulator(model: SimulatedCognito) -> Iterator[str]:
    server = SimulatorServer(model)
    try:
        yield server.start()
    finally:
        server.stop()


def full_world(
    pools: int, jobs: int, deep: Sequence[int] = ()
) -> tuple[SimulatedCognito, list[str]]:
    """Finished jobs under two active ones among the newest, as a busy pool looks; with
    `deep`, active jobs that many jobs down (the deepest one Created, waiting)."""
    model = SimulatedCognito(seed=1)
    model.faults.trailing_token = True
    model.provisioned_limits[(ACCOUNT, REGION)] = HIGH_QUOTA
    model.accounts = {f"{ACCESS_KEY_ID}0": ACCOUNT, f"{ACCESS_KEY_ID}1": ACCOUNT}
    deep_ages = {depth + 1: "InProgress" for depth in deep}
    if deep:
        deep_ages[deep[-1] + 1] = "Created"
    now = time.time()
    pool_ids = [f"{REGION}_Limits{index:03d}" for index in range(pools)]
    for pool_id in pool_ids:
        model.add_pool(pool_id, f"limits {pool_id}", spawning=False)
        for index in range(jobs):
            age = jobs - index
            status = deep_ages.get(age) or (
                "InProgress" if age <= 2 else ("Failed" if index % 17 == 0 else "Succeeded")
            )
            _add(model, pool_id, index, status, now - age * JOB_SPACING)
    return model, pool_ids


def _add(model: SimulatedCognito, pool_id: str, index: int, status: str, created: float) -> None:
    waiting = status == "Created"
    model.add_job(
        pool_id,
        name=f"limits-{index:05d}",
        status=status,
        created=created,
        started=None if waiting else created + 30,
        completed=created + 300 if status in ("Succeeded", "Failed") else None,
        imported=0 if waiting else 100 + index % 7,
        skipped=0 if waiting else index % 3,
        failed=0 if waiting else index % 2,
    )


def config_text(endpoint: str, pool_ids: Sequence[str], scrape: str = "", sets: int = 1) -> str:
    """The default config but for where the service is and who calls it."""
    names = ["first", "second"][:sets]
    credentials = "".join(
        f"  {name}: {{access_key_id: {ACCESS_KEY_ID}{index}, "
        f"secret_access_key: {SECRET_ACCESS_KEY}}}\n"
        for index, name in enumerate(names)
    )
    pools = "".join(
        f"  - {{id: {pool_id}, credentials: {names[index % len(names)]}}}\n"
        for index, pool_id in enumerate(pool_ids)
    )
    return (
        f"defaults: {{endpoint_url: {endpoint}}}\ncredentials:\n{credentials}"
        f"scrape:\n  timeout: 120s\n{scrape}pools:\n{pools}"
    )


class Exporter:
    def __init__(self, text: str, storage: str = "") -> None:
        config = load_text(text, "bench")
        self.runtime = Runtime(lambda: config, storage_path=storage)
        self.runtime.apply(config)

    def scrape(self, model: SimulatedCognito, pool_ids: Sequence[str], problems: list[str]) -> int:
        """One scrape; the ListUserImportJobs and DescribeUserImportJob calls it made. Every
        pool's counts are compared with the truth."""
        model.reset_calls()
        snapshot = self.runtime.scraper.collect(deadline=time.monotonic() + 120)
        calls = model.calls.get("ListUserImportJobs", 0) + model.calls.get(
            "DescribeUserImportJob", 0
        )
        results = {result.pool.id: result for result in snapshot.results}
        for pool_id in pool_ids:
            result = results.get(pool_id)
            outcome = None if result is None else result.outcome
            if result is None or not result.success or outcome is None:
                code = None if result is None else result.error_code
                problems.append(f"{pool_id}: not collected ({code})")
            elif counts_of(outcome.statuses, outcome.users_total) != model.counts(pool_id):
                problems.append(f"{pool_id}: counts differ from the truth")
        return calls

    def close(self) -> None:
        self.runtime.close()


def sequential(model: SimulatedCognito, endpoint: str, pool_ids: Sequence[str]) -> tuple[int, bool]:
    model.reset_calls()
    counts = scrape_sequentially(endpoint, REGION, pool_ids)
    exact = all(counts[pool_id] == model.counts(pool_id) for pool_id in pool_ids)
    return model.calls.get("ListUserImportJobs", 0), exact


def full_pools(pools: int, jobs: int) -> Scenario:
    scenario = Scenario("full pools")
    model, pool_ids = full_world(pools, jobs)
    with simulator(model) as endpoint, sts_at(endpoint):
        exporter = Exporter(config_text(endpoint, pool_ids))
        cold = exporter.scrape(model, pool_ids, scenario.problems)
        steady = [exporter.scrape(model, pool_ids, scenario.problems) for _ in range(3)]
        exporter.close()
        peer, exact = sequential(model, endpoint, pool_ids)
    pages = math.ceil(jobs / SERVICE_PAGE_JOBS) + 1  # and the empty page after the last token
    scenario.row("exporter cold", cold, pools)
    scenario.row("exporter steady (each of 3)", max(steady), pools)
    scenario.row("sequential, every scrape", peer, pools)
    if not exact:
        scenario.problems.append("the sequential peer is not exact")
    scenario.target(
        f"cold read exact with the default config ({pages} pages a pool)",
        not scenario.problems and cold == pools * pages,
        f"{cold / pools:.2f} calls/pool",
    )
    scenario.target(
        "steady 1.00 calls a pool",
        all(calls == pools for calls in steady),
        ", ".join(f"{calls / pools:.2f}" for calls in steady),
    )
    return scenario


def restart(pools: int, jobs: int) -> Scenario:
    scenario = Scenario("restart")
    model, pool_ids = full_world(pools, jobs)
    with (
        simulator(model) as endpoint,
        sts_at(endpoint),
        tempfile.TemporaryDirectory() as folder,
    ):
        text = config_text(endpoint, pool_ids)
        first = Exporter(text, storage=folder)
        first.scrape(model, pool_ids, scenario.problems)
        first.scrape(model, pool_ids, scenario.problems)
        first.close()
        for index, pool_id in enumerate(pool_ids):  # what happened while it was down
            _add(model, pool_id, jobs + index, "Succeeded", time.time())
        kept = Exporter(text, storage=folder)
        with_state = kept.scrape(model, pool_ids, scenario.problems)
        kept.close()
        fresh = Exporter(text)
        without = fresh.scrape(model, pool_ids, scenario.problems)
        fresh.close()
        peer, exact = sequential(model, endpoint, pool_ids)
    scenario.row("exporter first scrape, --storage.path", with_state, pools)
    scenario.row("exporter first scrape, no storage", without, pools)
    scenario.row("sequential, every scrape", peer, pools)
    if not exact:
        scenario.problems.append("the sequential peer is not exact")
    scenario.target(
        f"first scrape after a restart <= {RESTART_CALLS_PER_POOL} calls a pool, exact",
        not scenario.problems and with_state <= RESTART_CALLS_PER_POOL * pools,
        f"{with_state / pools:.2f} calls/pool (without storage {without / pools:.2f})",
    )
    return scenario


def deep_active_jobs(pools: int, jobs: int) -> Scenario:
    scenario = Scenario("deep active jobs")
    model, pool_ids = full_world(pools, jobs, DEEP_POSITIONS)
    paging_down = DEEP_POSITIONS[-1] // SERVICE_PAGE_JOBS + 1
    describing = 1 + len(DEEP_POSITIONS)
    with simulator(model) as endpoint, sts_at(endpoint):
        exporter = Exporter(config_text(endpoint, pool_ids))
        exporter.scrape(model, pool_ids, scenario.problems)
        steady = [exporter.scrape(model, pool_ids, scenario.problems) for _ in range(3)]
        describes = model.calls.get("DescribeUserImportJob", 0)
        exporter.close()
        peer, exact = sequential(model, endpoint, pool_ids)
    if not exact:
        scenario.problems.append("the sequential peer is not exact")
    scenario.row("exporter steady (most of 3)", max(steady), pools, describes_last=describes)
    scenario.row("paging down to the deepest", paging_down * pools, pools)
    scenario.row("one page and a describe each", describing * pools, pools)
    scenario.row("sequential, every scrape", peer, pools)
    cheaper = min(paging_down, describing)
    scenario.target(
        "steady calls a pool <= the cheaper of paging down and describing",
        not scenario.problems and max(steady) <= cheaper * pools,
        f"{max(steady) / pools:.2f} calls/pool, cheaper way {cheaper}",
    )
    return scenario


def auto_budget(pools: int, jobs: int) -> Scenario:
    scenario = Scenario("auto budget")
    model, pool_ids = full_world(pools, jobs)
    model.provisioned_limits[(ACCOUNT, REGION)] = BUDGET_QUOTA
    budget = BUDGET_QUOTA * QUOTA_SHARE
    with simulator(model) as endpoint, sts_at(endpoint):
        text = config_text(
            endpoint,
            pool_ids,
            f"  requests_per_second: auto\n  quota_share: {QUOTA_SHARE}\n",
            sets=2,
        )
        exporter = Exporter(text)
        started = time.perf_counter()
        calls = exporter.scrape(model, pool_ids, scenario.problems)
        wall = time.perf_counter() - started
        busiest = busiest_window(model.list_call_times())
        exporter.close()
        model.reset_calls()
        peer_started = time.perf_counter()
        scrape_sequentially(endpoint, REGION, pool_ids)
        peer_wall = time.perf_counter() - peer_started
        peer_busiest = busiest_window(model.list_call_times())
    scenario.row("exporter cold, two sets", calls, pools, busiest_second=busiest, wall_s=wall)
    scenario.row(
        "sequential, no budget",
        model.calls.get("ListUserImportJobs", 0),
        pools,
        busiest_second=peer_busiest,
        wall_s=peer_wall,
    )
    scenario.target(
        f"busiest second across both sets <= {budget:g} calls",
        not scenario.problems and busiest <= budget,
        f"{busiest} calls",
    )
    return scenario


@contextmanager
def sts_at(endpoint: str) -> Iterator[None]:
    before = os.environ.get("AWS_ENDPOINT_URL_STS")
    os.environ["AWS_ENDPOINT_URL_STS"] = endpoint
    try:
        yield
    finally:
        if before is None:
            del os.environ["AWS_ENDPOINT_URL_STS"]
        else:
            os.environ["AWS_ENDPOINT_URL_STS"] = before


def busiest_window(times: Sequence[float], width: float = 1.0) -> int:
    ordered = sorted(times)
    busiest, first = 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - width:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


def table(scenarios: Sequence[Scenario], pools: int, jobs: int) -> str:
    lines = [
        f"{pools} pools x {jobs} jobs, {SERVICE_PAGE_JOBS} jobs a page, token on the last page"
    ]
    for scenario in scenarios:
        lines.append("")
        lines.append(f"## {scenario.name}")
        for row in scenario.rows:
            extra = "".join(
                f"  {key} {value:.2f}" if isinstance(value, float) else f"  {key} {value}"
                for key, value in row.items()
                if key not in ("side", "calls", "calls_per_pool")
            )
            lines.append(
                f"  {row['side']:<42} {row['calls']:>6} calls  {row['calls_per_pool']:>6.2f}/pool"
                + extra
            )
        for target in scenario.targets:
            verdict = "PASS" if target["met"] else "FAIL"
            lines.append(f"  {verdict}  {target['target']}: {target['measured']}")
        lines.extend(f"  WRONG  {problem}" for problem in scenario.problems)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.limits_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--pools", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument(
        "--budget-jobs",
        type=int,
        default=500,
        help="jobs a pool in the auto budget scenario (its calls set its length)",
    )
    parser.add_argument("--json", dest="json_path")
    options = parser.parse_args(argv)
    configure("error", "logfmt", sys.stderr)  # job events would drown the table
    if options.jobs <= DEEP_POSITIONS[-1]:
        parser.error(f"--jobs must be more than {DEEP_POSITIONS[-1]} (the deepest active job)")
    scenarios = [
        full_pools(options.pools, options.jobs),
        restart(options.pools, options.jobs),
        deep_active_jobs(options.pools, options.jobs),
        auto_budget(options.pools, options.budget_jobs),
    ]
    print(table(scenarios, options.pools, options.jobs))
    correct = not any(scenario.problems for scenario in scenarios)
    print("\nresults: " + ("every pool exact in every scrape" if correct else "WRONG"))
    if options.json_path:
        with open(options.json_path, "w", encoding="utf-8") as out:
            json.dump({"correct": correct, "scenarios": [asdict(s) for s in scenarios]}, out)
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
