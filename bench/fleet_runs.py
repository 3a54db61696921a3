"""The fleet benchmark's two runs, each against a fresh simulator in its own process and the
exporter in its own, scraped over HTTP as Prometheus scrapes it.

- **large**: a region too big to refresh at every scrape, run compressed in time (every
  duration, rate and latency scaled by the same factor), scraped at a fixed interval while
  busy pools import, idle pools get a new job, and then a quiet period.
- **small**: a region that fits in one scrape, at the real default quota and timings, a few
  scrapes with changes between them.
"""

from __future__ import annotations

import math
import time
import urllib.error
from dataclasses import dataclass, field

from bench.fleet_exporter import Answer, config_text, running_exporter
from bench.fleet_world import FleetSimulator, FleetSpec, NewJob, Versions
from bench.processes import Child
from exporter.cognito.jobs import SERVICE_PAGE_JOBS
from exporter.demo.model import PoolCounts

SMALL_SCRAPE_GAP_SECONDS = 1.0


@dataclass(frozen=True)
class Timing:
    """Prometheus' and the exporter's timings, uncompressed, and the compression factor."""

    scale: float = 1.0
    interval: float = 60.0
    timeout: float = 10.0  # Prometheus' scrape timeout
    timeout_offset: float = 0.5
    exporter_timeout: float = 25.0  # scrape.timeout: also what a refresh between scrapes has
    max_staleness: float = 300.0
    full_resync_interval: float = 600.0
    budget: float = 10.0  # requests a second: half the default quota of 20
    pool_rate: float = 5.0
    latency: float = 0.05

    def wall(self, seconds: float) -> float:
        """`seconds` of the real world as the compressed run lives them."""
        return seconds / self.scale

    def real(self, seconds: float) -> float:
        return seconds * self.scale

    def scrape_settings(self) -> dict[str, object]:
        return {
            "timeout": self.wall(self.exporter_timeout),
            "requests_per_second": self.budget * self.scale,
            "pool_requests_per_second": self.pool_rate * self.scale,
            "full_resync_interval": self.wall(self.full_resync_interval),
            "max_staleness": self.wall(self.max_staleness),
        }


def full_read_calls(jobs: int) -> int:
    """Pages of a full read, and the empty page after the token the last one carries."""
    return math.ceil(jobs / SERVICE_PAGE_JOBS) + 1


@dataclass
class LargeRun:
    spec: FleetSpec
    timing: Timing
    started: float  # when the exporter was ready, wall clock
    activity_stopped: float
    answers: list[Answer]
    failed_scrapes: int  # not answered in time (Prometheus would read up 0)
    unreadable: list[str]  # answered with what is not the exposition format
    versions: Versions
    new_jobs: list[NewJob]
    arrivals: list[float]
    truth: dict[str, PoolCounts]
    warnings: dict[str, int]


def run_large(spec: FleetSpec, timing: Timing, minutes: float) -> LargeRun:
    """Scrape for `minutes` (uncompressed) of activity, then a quiet max_staleness and two
    intervals."""
    simulator = Child(
        "fleet-simulator", FleetSimulator, spec, timing.wall(timing.latency), timing.scale
    )
    try:
        config = config_text(simulator.ask("url"), spec.pool_ids(), timing.scrape_settings())
        offset = f"{timing.wall(timing.timeout_offset):g}"
        with running_exporter(config, "--web.timeout-offset", offset) as exporter:
            started = time.time()
            cold_calls = sum(full_read_calls(spec.jobs_in(pool_id)) for pool_id in spec.pool_ids())
            first = (
                started + cold_calls / (timing.budget * timing.scale) + timing.wall(timing.interval)
            )
            last = started + timing.wall(minutes * 60 - timing.max_staleness - timing.interval)
            count = spec.new_job_pools
            simulator.ask(
                "start_activity",
                [
                    first + (max(first, last) - first) * index / max(1, count - 1)
                    for index in range(count)
                ],
            )
            interval = timing.wall(timing.interval)
            activity_end = started + timing.wall(minutes * 60)
            end = activity_end + timing.wall(timing.max_staleness) + 2 * interval
            answers: list[Answer] = []
            failed = 0
            unreadable: list[str] = []
            stopped: float | None = None
            slot = 0
            while (at := started + slot * interval) <= end:
                time.sleep(max(0.0, at - time.time()))
                if stopped is None and time.time() >= activity_end:
                    simulator.ask("stop_activity")
                    stopped = time.time()
                try:
                    answers.append(exporter.scrape(timing.wall(timing.timeout)))
                except (urllib.error.URLError, OSError):
                    failed += 1
                except ValueError as error:
                    unreadable.append(f"scrape {slot}: the answer is not the text format: {error}")
                slot = max(slot + 1, math.floor((time.time() - started) / interval) + 1)
            warnings = exporter.warnings()
        return LargeRun(
            spec=spec,
            timing=timing,
            started=started,
            activity_stopped=stopped if stopped is not None else time.time(),
            answers=answers,
            failed_scrapes=failed,
            unreadable=unreadable,
            versions=simulator.ask("versions"),
            new_jobs=simulator.ask("new_jobs"),
            arrivals=simulator.ask("read_arrivals"),
            truth=simulator.ask("truth"),
            warnings=warnings,
        )
    finally:
        simulator.stop()


@dataclass
class SmallScrape:
    answer: Answer
    calls: dict[str, int]  # ListUserImportJobs calls a pool during the scrape
    calls_before: int  # calls of any pool since the previous scrape was answered
    truth: dict[str, PoolCounts]


@dataclass
class SmallRun:
    spec: FleetSpec
    scrapes: list[SmallScrape] = field(default_factory=list)
    versions: Versions = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)


def run_small(spec: FleetSpec, scrapes: int) -> SmallRun:
    """A cold scrape and `scrapes` more at the real defaults, every story one step between
    two scrapes (so each scrape has something new to read)."""
    timing = Timing()
    run = SmallRun(spec)
    simulator = Child("small-simulator", FleetSimulator, spec, timing.latency, 1.0)
    try:
        config = config_text(simulator.ask("url"), spec.pool_ids(), {})
        with running_exporter(config) as exporter:
            answered = simulator.ask("list_calls_by_pool")
            for number in range(scrapes + 1):
                if number:
                    time.sleep(SMALL_SCRAPE_GAP_SECONDS)
                    simulator.ask("step_all")
                before = simulator.ask("list_calls_by_pool")
                answer = exporter.scrape(timing.timeout)
                after = simulator.ask("list_calls_by_pool")
                run.scrapes.append(
                    SmallScrape(
                        answer=answer,
                        calls={p: after.get(p, 0) - before.get(p, 0) for p in spec.pool_ids()},
                        calls_before=sum(before.values()) - sum(answered.values()),
                        truth=simulator.ask("truth"),
                    )
                )
                answered = after
            run.warnings = exporter.warnings()
        run.versions = simulator.ask("versions")
        run.arrivals = simulator.ask("read_arrivals")
        return run
    finally:
        simulator.stop()
