"""The cost of reading why users failed: one import job of 500,000 rows, all failed, its log
read through the exporter's reasons reader over real botocore and HTTP against the simulated
CloudWatch Logs, beside the 5 requests a second FilterLogEvents allows an account and Region;
and a scrape's ListUserImportJobs calls, the same with reasons on and off.

    .venv/bin/python -m bench.reasons_bench                    # 500,000 rows, the default 1/s
    .venv/bin/python -m bench.reasons_bench --rows 20000 --rate 50 --json out.json

Exits 1 when a verdict fails: counts not exact, the quota exceeded, scrapes costing more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from prometheus_client import generate_latest

from exporter.app import Runtime
from exporter.collect.reasons_reader import ReadLimits
from exporter.config.load import load_text
from exporter.demo.logs import expected_reasons
from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito

POOL = "eu-west-1_Reasons01"
QUOTA_PER_SECOND = 5.0
SCRAPES = 5


@dataclass(frozen=True)
class Result:
    rows: int
    rate: float
    latency: float
    pages: int
    describe_calls: int
    seconds: float
    peak_calls_in_a_second: int
    exact: bool
    list_calls_reasons_off: int
    list_calls_reasons_on: int
    scrape_seconds_max: float


def config_text(endpoint: str, reasons: bool) -> str:
    return f"""
defaults: {{endpoint_url: {endpoint}, logs_endpoint_url: {endpoint}, credentials: bench}}
credentials:
  bench: {{access_key_id: BENCHACCESSKEY, secret_access_key: bench-not-a-secret,
          account_id: "123456789012"}}
scrape: {{requests_per_second: 1000, pool_requests_per_second: 1000}}
pools:
  - {{id: {POOL}, reasons: {str(reasons).lower()}}}
"""


def world(rows: int, latency: float, now: float) -> tuple[SimulatedCognito, str]:
    """The simulator with the pool and its one job, and the job's id."""
    model = SimulatedCognito(seed=9, clock=lambda: now)
    model.add_pool(POOL, "bench reasons", spawning=False)
    job_id = model.add_job(
        POOL,
        name="half a million",
        status="Failed",
        created=now - 7200,
        started=now - 7000,
        completed=now - 600,
        failed=rows,
        completion_message="Too many users failed validation",
    )
    model.logs.faults.latency = latency
    return model, job_id


def peak_per_second(times: Sequence[float]) -> int:
    """The most calls that arrived within any one second."""
    ordered = sorted(times)
    peak, start = 0, 0
    for end, arrived in enumerate(ordered):
        while arrived - ordered[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def scrape_calls(model: SimulatedCognito, endpoint: str, reasons: bool) -> tuple[int, float]:
    """ListUserImportJobs calls of SCRAPES scrapes, and the longest scrape."""
    model.reset_calls()
    config = load_text(config_text(endpoint, reasons))
    runtime = Runtime(lambda: config)
    runtime.start()
    longest = 0.0
    try:
        for _ in range(SCRAPES):
            started = time.monotonic()
            generate_latest(runtime.registry)
            longest = max(longest, time.monotonic() - started)
    finally:
        runtime.close()
    return model.call_counts().get("ListUserImportJobs", 0), longest


def run(rows: int, rate: float, latency: float) -> Result:
    now = time.time()
    model, job_id = world(rows, latency, now)
    with SimulatorServer(model) as server:
        off, _ = scrape_calls(model, server.url, reasons=False)
        model.logs.call_times.clear()
        model.logs.calls.clear()
        model.reset_calls()
        config = load_text(config_text(server.url, True))
        runtime = Runtime(lambda: config, reasons_limits=ReadLimits(requests_per_second=rate))
        reader = runtime.reasons_reader
        runtime.start()
        try:
            started = time.monotonic()
            generate_latest(runtime.registry)
            reader.wait_until_idle(3600)
            seconds = time.monotonic() - started
            snapshot = runtime.scraper.collect(time.monotonic() + 30)
        finally:
            runtime.close()
        describes = model.call_counts().get("DescribeUserPool", 0)
        reasons = snapshot.results[0].reasons
        totals = dict(reasons.totals) if reasons is not None else {}
        on, longest = scrape_calls(model, server.url, reasons=True)
    return Result(
        rows=rows,
        rate=rate,
        latency=latency,
        pages=model.logs.calls["FilterLogEvents"],
        describe_calls=describes,
        seconds=round(seconds, 2),
        peak_calls_in_a_second=peak_per_second(model.logs.call_times),
        exact=totals == expected_reasons(job_id, 0, rows),
        list_calls_reasons_off=off,
        list_calls_reasons_on=on,
        scrape_seconds_max=round(longest, 3),
    )


def verdicts(result: Result) -> dict[str, bool]:
    return {
        "reasons counted exactly": result.exact,
        "FilterLogEvents within the account's 5/s": result.peak_calls_in_a_second
        <= QUOTA_PER_SECOND,
        "a scrape's ListUserImportJobs calls unchanged": result.list_calls_reasons_on
        == result.list_calls_reasons_off,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rate", type=float, default=ReadLimits().requests_per_second)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = run(args.rows, args.rate, args.latency)
    checks = verdicts(result)
    for name, value in asdict(result).items():
        print(f"{name:28} {value}")
    print(f"{'pages a second (mean)':28} {result.pages / max(result.seconds, 1e-9):.2f}")
    print(f"{'users a page (mean)':28} {result.rows / max(result.pages, 1):.0f}")
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"result": asdict(result), "verdicts": checks}, out, indent=2)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
