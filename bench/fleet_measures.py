"""What the fleet benchmark reads out of a run: ages, false failures, how soon a new job was
seen, the busiest second, and whether every value served was one the pool really held.

Plain functions over the answers (`bench.fleet_exporter.Answer`), the simulator's versions of
each pool and its call arrivals, all on the wall clock; figures come out in the run's own
seconds and the caller converts them to uncompressed ones.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.fleet_exporter import Answer, PoolView
from bench.fleet_world import NewJob, Versions, has_active_job
from exporter.demo.model import PoolCounts


@dataclass(frozen=True)
class Ages:
    """Pool ages (answer sent minus the pool's last successful refresh) over answers."""

    samples: int
    max_age: float
    over: int  # samples older than the bound asked about
    never: int  # samples of pools never refreshed yet
    late_pools: frozenset[str] = frozenset()  # the pools of those samples

    @staticmethod
    def of(ages: Iterable[tuple[str, float]], bound: float) -> Ages:
        listed = list(ages)
        known = [age for _, age in listed if math.isfinite(age)]
        return Ages(
            samples=len(listed),
            max_age=max(known, default=0.0),
            over=sum(1 for age in known if age > bound),
            never=len(listed) - len(known),
            late_pools=frozenset(pool_id for pool_id, age in listed if age > bound),
        )


def age_of(view: PoolView | None, answer: Answer) -> float:
    if view is None or view.refreshed_at is None:
        return math.inf
    return max(0.0, answer.sent - view.refreshed_at)


def first_complete(answers: Sequence[Answer], pool_ids: Sequence[str]) -> int | None:
    """The index of the first answer in which every pool had been refreshed once."""
    for index, answer in enumerate(answers):
        if all(answer.pools.get(pool_id, PoolView()).refreshed_at for pool_id in pool_ids):
            return index
    return None


def cold_start_seconds(answers: Sequence[Answer], pool_ids: Sequence[str], started: float) -> float:
    """From the exporter's start until every pool had been refreshed once (each pool's first
    successful refresh, as the first answer carrying it tells)."""
    first: dict[str, float] = {}
    for answer in answers:
        for pool_id, view in answer.pools.items():
            if view.refreshed_at is not None:
                first.setdefault(pool_id, view.refreshed_at)
    if any(pool_id not in first for pool_id in pool_ids):
        return math.inf
    return max(first[pool_id] for pool_id in pool_ids) - started


def all_ages(answers: Sequence[Answer], pool_ids: Sequence[str], bound: float) -> Ages:
    return Ages.of(((p, age_of(a.pools.get(p), a)) for a in answers for p in pool_ids), bound)


def active_ages(answers: Sequence[Answer]) -> Ages:
    """Ages of the pools an answer shows with an active job; `over` counts those last
    refreshed before the previous scrape was sent (more than one scrape old)."""
    ages: list[float] = []
    late: set[str] = set()
    over = 0
    for previous, answer in itertools.pairwise(answers):
        for pool_id, view in answer.pools.items():
            counts = view.counts()
            if counts is None or not has_active_job(counts):
                continue
            ages.append(age_of(view, answer))
            if view.refreshed_at is None or view.refreshed_at < previous.sent:
                over += 1
                late.add(pool_id)
    known = [age for age in ages if math.isfinite(age)]
    return Ages(len(ages), max(known, default=0.0), over, len(ages) - len(known), frozenset(late))


def served_counts(answers: Sequence[Answer]) -> list[int]:
    """How many pools each answer carries values for."""
    return [sum(1 for view in a.pools.values() if view.counts() is not None) for a in answers]


def false_failures(answers: Sequence[Answer]) -> dict[str, int]:
    """Pools reading scrape_success 0, and in how many answers (the simulator never fails)."""
    failed: dict[str, int] = {}
    for answer in answers:
        for pool_id, view in answer.pools.items():
            if view.success == 0:
                failed[pool_id] = failed.get(pool_id, 0) + 1
    return failed


@dataclass(frozen=True)
class Sighting:
    pool_id: str
    refreshed_after: float  # from the job's creation to the refresh that read it
    answered_after: float  # from its creation to the first answer showing it


def new_job_sightings(
    answers: Sequence[Answer], new_jobs: Sequence[NewJob], versions: Versions
) -> list[Sighting]:
    """For each job created in an idle pool: how soon a refresh read it and an answer showed
    it (inf when none did). A pool shows it once it serves more jobs than it held before."""
    sightings = []
    for job in new_jobs:
        before = sum(versions[job.pool_id][0][1].statuses.values())
        refreshed = answered = math.inf
        for answer in answers:
            view = answer.pools.get(job.pool_id)
            if view is None or answer.answered < job.created:
                continue
            if sum(view.statuses.values()) > before:
                stamp = view.refreshed_at if view.refreshed_at is not None else answer.sent
                refreshed = stamp - job.created
                answered = answer.answered - job.created
                break
        sightings.append(Sighting(job.pool_id, refreshed, answered))
    return sightings


def held_between(
    history: Sequence[tuple[float, PoolCounts]], start: float, end: float
) -> list[PoolCounts]:
    """The versions of a pool in force at some moment of [start, end]."""
    held = []
    for index, (since, counts) in enumerate(history):
        until = history[index + 1][0] if index + 1 < len(history) else math.inf
        if since <= end and until >= start:
            held.append(counts)
    return held


def wrong_values(answers: Sequence[Answer], versions: Versions, slack: float) -> list[str]:
    """Every served value checked: a pool's counts must be ones it held at some moment
    between its previous refresh and this one (a read may span several scrapes, resuming
    where it stopped), give or take `slack`; and its user totals never go down."""
    problems: list[str] = []
    highest: dict[tuple[str, str], int] = {}
    stamps: dict[str, tuple[float, float]] = {}  # pool -> (previous refresh, last refresh)
    for number, answer in enumerate(answers):
        for pool_id, view in answer.pools.items():
            counts = view.counts()
            if counts is None or pool_id not in versions:
                continue
            stamp = view.refreshed_at if view.refreshed_at is not None else answer.answered
            previous, last = stamps.get(pool_id, (-math.inf, -math.inf))
            if stamp != last:
                previous, last = last, stamp
                stamps[pool_id] = (previous, last)
            if counts not in held_between(versions[pool_id], previous - slack, last + slack):
                problems.append(
                    f"answer {number}: {pool_id} serves {counts}, which it did not hold "
                    "between its last two refreshes"
                )
            for outcome, value in view.users.items():
                if value < highest.get((pool_id, outcome), 0):
                    problems.append(f"answer {number}: {pool_id} users_total {outcome} went down")
                highest[(pool_id, outcome)] = max(value, highest.get((pool_id, outcome), 0))
    return problems
