"""The benchmark's simulated pools: a long history of finished jobs under a few active ones.

Active jobs sit among the newest few, as they do in a real pool (jobs finish or expire within
a day), so an up-to-date exporter needs one page per pool. Nothing is live: the world stays
exactly as populated, and the simulator's own view of it is the truth every result is
compared with.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.demo.model import PoolCounts
from exporter.demo.service import SimulatedCognito

REGION = "eu-west-1"
ACCESS_KEY_ID = "BENCHACCESSKEY"
SECRET_ACCESS_KEY = "bench-not-a-secret"  # noqa: S105 - the simulator checks no signature
FINISHED_MIX = ("Succeeded",) * 16 + ("Failed", "Failed", "Stopped", "Expired")
ACTIVE_STATUSES = ("Created", "Pending", "InProgress", "Stopping")
ACTIVE_DEPTH = 5
ACTIVE_SHARE = 0.4
JOB_SPACING = 600.0
USER_OUTCOMES = ("imported", "skipped", "failed")


@dataclass(frozen=True)
class WorldSpec:
    pools: int
    jobs: int
    seed: int = 1

    def pool_ids(self) -> list[str]:
        return [f"{REGION}_Bench{index:05d}" for index in range(self.pools)]


def populate(model: SimulatedCognito, spec: WorldSpec, now: float | None = None) -> None:
    start = time.time() if now is None else now
    for pool_id in spec.pool_ids():
        draw = random.Random(f"{spec.seed}/{pool_id}")
        model.add_pool(pool_id, f"bench {pool_id}", spawning=False)
        for index in range(spec.jobs):
            age = spec.jobs - index
            active = age <= ACTIVE_DEPTH and draw.random() < ACTIVE_SHARE
            status = draw.choice(ACTIVE_STATUSES if active else FINISHED_MIX)
            add_history_job(
                model, pool_id, f"bench-{index:05d}", status, start - age * JOB_SPACING, draw
            )


def add_history_job(
    model: SimulatedCognito,
    pool_id: str,
    name: str,
    status: str,
    created: float,
    draw: random.Random,
) -> None:
    started = None if status in ("Created", "Expired") else created + 30
    finished = status in ("Succeeded", "Failed", "Stopped")
    imported = 0 if started is None else draw.randint(0, 5000)
    model.add_job(
        pool_id,
        name=name,
        status=status,
        created=created,
        started=started,
        completed=created + 300 if finished else None,
        imported=imported,
        skipped=0 if started is None else draw.randint(0, 60),
        failed=0 if started is None else draw.randint(0, 20),
        completion_message="Import Job Completed Successfully." if finished else None,
    )


def truth(model: SimulatedCognito, pool_id: str) -> PoolCounts:
    return model.counts(pool_id)


def counts_of(statuses: Mapping[str, int], users: Mapping[str, int]) -> PoolCounts:
    return PoolCounts(
        statuses={status: count for status, count in statuses.items() if count},
        users={outcome: users.get(outcome, 0) for outcome in USER_OUTCOMES},
    )
