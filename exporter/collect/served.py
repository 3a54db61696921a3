"""What a pool serves between refreshes: its last refresh's result, and which of its jobs
get series of their own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exporter.cognito.jobs import Job
from exporter.collect.history import ScanOutcome
from exporter.collect.ratelimit import DeadlineExceeded
from exporter.collect.reasons_pool import ReasonsView
from exporter.config.model import Pool

TIMEOUT = DeadlineExceeded.error_code


@dataclass(frozen=True)
class PoolResult:
    """A pool's last refresh: its error, if it failed, and what is known of the pool (kept
    from the last refresh that succeeded, as of `refreshed_at`, seconds since the epoch)."""

    pool: Pool
    duration: float
    error_code: str | None = None
    error_message: str | None = None
    outcome: ScanOutcome | None = None
    recent_jobs: tuple[Job, ...] = ()
    refreshed_at: float | None = None
    # why users were skipped or failed, as read so far (pools with reasons on)
    reasons: ReasonsView | None = None

    @property
    def success(self) -> bool:
        return self.error_code is None

    @property
    def attempted(self) -> bool:
        """False for a pool not refreshed yet: nothing is known of it, nothing failed."""
        return self.error_code is not None or self.outcome is not None


def recent_jobs(jobs: Iterable[Job], now: float, window: float, limit: int) -> list[Job]:
    """Active jobs and jobs that finished within the window, newest first, at most `limit`."""
    chosen: list[Job] = []
    for job in jobs:
        if len(chosen) >= limit:
            break
        changed = job.last_change
        if not job.terminal or (changed is not None and changed >= now - window):
            chosen.append(job)
    return chosen
