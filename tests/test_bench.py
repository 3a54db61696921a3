"""The benchmark: its quick size runs end to end, and its arithmetic is right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.scrape_bench import Row, critical_path, max_in_window, median_run, parse_plan

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMALL_POOLS = 5
SMALL_PAGES_PER_POOL = 3  # 130 jobs in pages of 50, what an answer holds at most


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    json_path = tmp_path_factory.mktemp("bench") / "small.json"
    finished = run_bench("bench.scrape_bench", "--small", "--json", str(json_path))
    return finished.stdout, json.loads(json_path.read_text())


def run_bench(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A benchmark run to its end in a process of its own; it must exit 0 (results right)."""
    finished = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished


def test_small_run_prints_the_table_and_every_verdict(
    small_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, report = small_run
    for text in (
        "5 pools x 130 jobs",
        "wall s",
        "API calls",
        "sequential boto3",
        "exporter cold",
        "exporter steady",
        "exporter steady @ 2 rps",
        "boto3 default client",
        "results: every pool exact in every scrape",
    ):
        assert text in stdout
    assert stdout.count("PASS") + stdout.count("FAIL") == len(report["targets"]) == 7


def test_small_run_writes_every_scrape_exact(small_run: tuple[str, dict[str, Any]]) -> None:
    _, report = small_run
    assert report["correct"] is True
    assert report["problems"] == []
    assert set(report["scrapes"]) == {"sequential", "cold", "steady", "rate_limited"}
    for name, scrape in report["scrapes"].items():
        assert scrape["pools"] == SMALL_POOLS, name
        assert scrape["pools_exact"] == SMALL_POOLS, name
        assert scrape["pools_called"] == SMALL_POOLS, name
        assert 0 < scrape["wall_seconds"] < 60, name
        assert 0 < scrape["cpu_seconds"] < 30, name
        assert 20 < scrape["peak_rss_mb"] < 1000, name


def test_small_run_pages_in_full_once_then_once_per_pool(
    small_run: tuple[str, dict[str, Any]],
) -> None:
    _, report = small_run
    scrapes = report["scrapes"]
    assert scrapes["sequential"]["api_calls"] == SMALL_POOLS * SMALL_PAGES_PER_POOL
    assert scrapes["cold"]["api_calls"] == SMALL_POOLS * SMALL_PAGES_PER_POOL
    assert scrapes["cold"]["full_scans"] == SMALL_POOLS
    for steady in report["runs"]["steady"]:
        assert steady["calls_per_pool"] == 1.0
        assert steady["full_scans"] == 0
        assert steady["cached"] is False
    assert scrapes["steady"]["critical_path_seconds"] == pytest.approx(0.005)
    assert scrapes["cold"]["critical_path_seconds"] == pytest.approx(0.015)


def test_small_run_rate_limited_scrape_takes_the_quota_time(
    small_run: tuple[str, dict[str, Any]],
) -> None:
    _, report = small_run
    limited = report["scrapes"]["rate_limited"]
    assert limited["requests_per_second"] == 2
    assert limited["quota_bound_seconds"] == pytest.approx(SMALL_POOLS / 2)
    # Five requests spaced 0.5 s apart: two seconds from first to last, at least.
    assert limited["wall_seconds"] >= 2.0
    assert limited["max_requests_in_any_second"] == 2


def test_small_run_compares_cpu_per_page(small_run: tuple[str, dict[str, Any]]) -> None:
    _, report = small_run
    cpu = report["cpu_per_page"]
    assert cpu["jobs_per_page"] == 50  # what one answer holds at most, as the service sends
    assert cpu["pages_each"] == 50
    assert set(cpu["costs"]) == {
        "boto3 default client",
        "exporter client",
        "exporter client + parse_page",
    }
    for cost in cpu["costs"].values():
        assert 0 < cost["cpu_ms"] < 100


def test_busiest_window_counts_calls_in_a_half_open_second() -> None:
    assert max_in_window([], 1.0) == 0
    assert max_in_window([5.0], 1.0) == 1
    assert max_in_window([0.0, 0.5, 1.0, 1.5, 2.0], 1.0) == 2
    assert max_in_window([2.0, 0.0, 0.999, 0.5, 1.0], 1.0) == 3


def test_critical_path_is_pages_times_latency_times_rounds() -> None:
    assert critical_path(4, 0.05, 60, 32) == pytest.approx(0.4)
    assert critical_path(17, 0.05, 1000, 32) == pytest.approx(27.2)
    assert critical_path(1, 0.05, 32, 32) == pytest.approx(0.05)


def test_median_run_is_a_real_run() -> None:
    rows = [
        Row(f"run {wall}", wall, 60, 60, 60, 0.1, 60.0, 60.0, 0.1, 0.01, 60)
        for wall in (0.9, 0.2, 0.5, 0.3)
    ]
    assert median_run(rows).name == "run 0.3"
    assert median_run(rows[:3]).name == "run 0.5"


def test_presets_and_overrides() -> None:
    default, json_path = parse_plan([])
    assert (default.pools, default.jobs, default.latency, default.concurrency) == (
        60,
        200,
        0.05,
        32,
    )
    assert default.cpu_pages == 300
    assert default.sequential
    assert json_path is None
    large, _ = parse_plan(["--large", "--rate-limited-rps", "10", "--json", "out.json"])
    assert (large.pools, large.jobs, large.rate_limited_rps, large.sequential) == (
        1000,
        1000,
        10.0,
        False,
    )
    assert large.exporter_settings(10).timeout >= 2 * 1000 / 10
    small, _ = parse_plan(["--small", "--pools", "7", "--no-sequential"])
    assert (small.pools, small.jobs, small.sequential) == (7, 130, False)


def test_the_limits_benchmark_meets_every_target(tmp_path: Path) -> None:
    json_path = tmp_path / "limits.json"
    finished = run_bench(
        "bench.limits_bench", "--pools", "6", "--budget-jobs", "250", "--json", str(json_path)
    )
    assert finished.stderr == ""
    report = json.loads(json_path.read_text())
    assert report["correct"] is True
    by_name = {scenario["name"]: scenario for scenario in report["scenarios"]}
    assert list(by_name) == ["full pools", "restart", "deep active jobs", "auto budget"]
    for scenario in by_name.values():
        assert scenario["problems"] == []
        assert scenario["targets"]
        assert all(target["met"] for target in scenario["targets"]), scenario
    rows = {row["side"]: row for row in by_name["full pools"]["rows"]}
    # 1,000 jobs: 20 pages of 50 and the empty page after the trailing token
    assert rows["exporter cold"]["calls_per_pool"] == 21
    assert rows["exporter steady (each of 3)"]["calls_per_pool"] == 1
    rows = {row["side"]: row for row in by_name["restart"]["rows"]}
    assert rows["exporter first scrape, --storage.path"]["calls_per_pool"] == 1
    assert rows["exporter first scrape, no storage"]["calls_per_pool"] == 22
    rows = {row["side"]: row for row in by_name["deep active jobs"]["rows"]}
    assert rows["exporter steady (most of 3)"]["calls_per_pool"] == 4
    assert rows["exporter steady (most of 3)"]["describes_last"] == 18
    rows = {row["side"]: row for row in by_name["auto budget"]["rows"]}
    # 36 calls that six pools at 5/s each could send at 30/s, held to 20 in any second
    assert rows["exporter cold, two sets"]["calls"] == 36
    assert 15 <= rows["exporter cold, two sets"]["busiest_second"] <= 20
    assert rows["sequential, no budget"]["busiest_second"] > 20
    assert "PASS  busiest second across both sets <= 20 calls" in finished.stdout


FleetFigures = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FleetFigures, FleetFigures]:
    """The fleet benchmark's CI size: the large run's figures and the small run's."""
    json_path = tmp_path_factory.mktemp("fleet") / "fleet.json"
    finished = run_bench("bench.fleet_bench", "--ci", "--json", str(json_path))
    assert finished.stderr == ""
    assert "results: every value served was one its pool held" in finished.stdout
    report = json.loads(json_path.read_text())
    assert report["correct"] is True
    assert report["problems"] == []
    large, small = (
        {row["figure"]: row for row in report["rows"] if row["run"].startswith(f"{pools} pools")}
        for pools in (120, 10)
    )
    return large, small


def test_the_fleet_benchmark_keeps_every_pool_of_a_large_region_fresh(
    fleet_run: tuple[FleetFigures, FleetFigures],
) -> None:
    large, _ = fleet_run
    for figure in (
        "pools with values in an answer after the cold start",
        "pool age at every scrape from one max_staleness after the cold start",
        "new job in an idle pool (4 jobs), read by a refresh within",
        "refresh_behind_seconds after the cold start",
        "pools equal to the truth after the quiet period",
    ):
        assert large[figure]["met"] is True, large[figure]
    assert large["pools with values in an answer after the cold start"]["measured"] == (
        "min 120, max 120"
    )
    assert large["full_resync_interval_seconds at the end"]["measured"] == "600 s"


def test_the_fleet_benchmark_reads_no_failure_that_did_not_happen(
    fleet_run: tuple[FleetFigures, FleetFigures],
) -> None:
    large, _ = fleet_run
    failures = large["pools reading scrape_success 0 (the simulator never fails)"]
    assert failures["measured"] == "0 pools, 0 pool-scrapes"
    assert large["age of pools with an active job"]["met"] is True


def test_the_fleet_benchmark_refreshes_a_small_region_at_every_scrape_as_before(
    fleet_run: tuple[FleetFigures, FleetFigures],
) -> None:
    _, small = fleet_run
    assert all(row["met"] is True for row in small.values()), small
    assert small["cold scrape: calls a pool"]["measured"] == "39 calls"
    assert small["steady scrapes: ListUserImportJobs calls a pool a scrape"]["measured"] == "1"
    assert small["calls between scrapes"]["measured"] == "0"
    assert small["pools equal to the truth at their scrape"]["measured"] == "30 of 30 pool-scrapes"
