"""What the simulator's own tests share: a fixed clock, a lifecycle with round numbers, two
pools, and a history of finished jobs added in shuffled order."""

from __future__ import annotations

import random

from exporter.demo.lifecycle import SUCCEEDED_MESSAGE, Lifecycle
from exporter.demo.model import CognitoModel

START = 1_700_000_000.0
POOL = "eu-west-1_Abc123"
OTHER_POOL = "eu-west-1_Other9"
LIFECYCLE = Lifecycle(
    expire_after=120.0,
    pending_seconds=5.0,
    stopping_seconds=3.0,
    users_per_second=100.0,
    min_users=1000,
    max_users=1000,
    skip_ratio=0.1,
    user_failure_ratio=0.05,
    ratio_jitter=0.0,
    failure_probability=0.0,
    operator_start_after=10.0,
    abandon_probability=0.0,
    new_job_every=None,
    arrival_jitter=0.0,
)


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now


def add_history(model: CognitoModel, pool_id: str, count: int) -> list[str]:
    """Finished jobs created 5 s apart, added in shuffled order; returns their ids newest first."""
    offsets = list(range(count))
    random.Random(3).shuffle(offsets)  # noqa: S311 - a fixed shuffle, not a secret
    created_by_id = {
        model.add_job(
            pool_id,
            name=f"history-{offset:03d}",
            status="Succeeded",
            created=START - 10_000 + offset * 5,
            started=START - 10_000 + offset * 5 + 1,
            completed=START - 10_000 + offset * 5 + 60,
            imported=offset,
            skipped=1,
            failed=2,
            completion_message=SUCCEEDED_MESSAGE,
        ): offset
        for offset in offsets
    }
    return sorted(created_by_id, key=created_by_id.__getitem__, reverse=True)
