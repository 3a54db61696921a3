"""What one pool knows of why its jobs' users were skipped or failed: the reasons of each
job read, the pool's running totals, the jobs waiting to be read, and whether reading is on.

A `PoolReasons` belongs to its tracked pool. A collection asks it which jobs to read
(`wanted`) and what to report (`view`); the background reader (`exporter.collect.
reasons_reader`) gives it each job's result (`record`) or the news that reading is denied.
Jobs are kept while the pool's history keeps them (`keep_only`), so memory follows the
history; the totals are a counter, never lowered. What it holds is stored with the pool's
history (`stored`, `restore`), so a restart reads no job twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exporter.cognito.jobs import Job
from exporter.collect.reasons import EXAMPLE_CHARS, REASONS, ROW_OUTCOMES, Example, example_text
from exporter.config.problems import describe_validation_errors

READING = "reading"
OFF = "off"
NO_LOG_ROLE = "no_log_role"
DENIED = "denied"
STATES = (READING, OFF, NO_LOG_ROLE, DENIED)
MAX_STORED_JOBS = 20_000
_MAX_COUNT = 2**63
_NEVER_DENIED = object()


@dataclass(frozen=True)
class JobReasons:
    """A job's skipped and failed users by (outcome, reason), as its log told them;
    `complete` when every such user of the job was found in it; `problem`, why the read
    was given up, if it was."""

    job_id: str
    counts: Mapping[tuple[str, str], int]
    examples: tuple[Example, ...]
    complete: bool
    problem: str | None = None


@dataclass(frozen=True)
class ReasonsView:
    """What a collection reports of the pool's reasons."""

    state: str
    jobs: Mapping[str, JobReasons]
    totals: Mapping[tuple[str, str], int]
    waiting: int


def wants_reading(job: Job) -> bool:
    """A finished job with users skipped or failed: its log says why."""
    return job.terminal and (job.skipped > 0 or job.failed > 0)


class PoolReasons:
    def __init__(self, enabled: bool = True) -> None:
        self._lock = threading.Lock()
        self._enabled = enabled
        self._jobs: dict[str, JobReasons] = {}
        self._totals: Counter[tuple[str, str]] = Counter()
        self._waiting: set[str] = set()
        self._pool_name: str | None = None
        # the configuration generation under which a read was denied: off until the next
        self._denied_in: object = _NEVER_DENIED
        self._latest_without_role = False
        self._dropped = False

    @property
    def pool_name(self) -> str | None:
        """The pool's own name, which names its log group (None until it was read)."""
        with self._lock:
            return self._pool_name

    def name_read(self, name: str) -> None:
        with self._lock:
            self._pool_name = name

    def wanted(self, jobs: Iterable[Job], generation: object) -> list[Job]:
        """Of `jobs` (newest first), those to read now: finished with users skipped or
        failed, written to a log, neither read nor waiting. They count as waiting from now."""
        chosen: list[Job] = []
        with self._lock:
            if not self._enabled or self._dropped or self._denied_in is generation:
                return chosen
            latest_seen = False
            for job in jobs:
                if not wants_reading(job):
                    continue
                if not latest_seen:
                    latest_seen = True
                    self._latest_without_role = job.log_role_arn is None
                if job.log_role_arn is None:
                    continue
                if job.job_id in self._jobs or job.job_id in self._waiting:
                    continue
                self._waiting.add(job.job_id)
                chosen.append(job)
        return chosen

    def still_wanted(self, job_id: str, generation: object) -> bool:
        """Whether a waiting job of this pool is still to be read: reading was neither turned
        off, refused nor dropped since it was offered."""
        with self._lock:
            return (
                job_id in self._waiting
                and self._enabled
                and not self._dropped
                and self._denied_in is not generation
            )

    def turn(self, enabled: bool) -> None:
        """Reading on or off, as a reload configures it; off forgets the waiting jobs at once."""
        with self._lock:
            self._enabled = enabled
            if not enabled:
                self._waiting.clear()

    def record(self, reasons: JobReasons) -> None:
        """A job's log was read (or given up on): counted once, never read again."""
        with self._lock:
            self._waiting.discard(reasons.job_id)
            if self._dropped or reasons.job_id in self._jobs:
                return
            self._jobs[reasons.job_id] = reasons
            self._totals.update(reasons.counts)

    def deny(self, generation: object) -> bool:
        """Reading was refused: off until the configuration is loaded again. True the
        first time for this generation (the one time it is logged)."""
        with self._lock:
            first = self._denied_in is not generation
            self._denied_in = generation
            self._waiting.clear()
            return first

    def forget_waiting(self, job_id: str) -> None:
        with self._lock:
            self._waiting.discard(job_id)

    def drop(self) -> None:
        with self._lock:
            self._dropped = True
            self._waiting.clear()

    def keep_only(self, job_ids: Iterable[str]) -> None:
        """Forget the jobs the pool's history no longer keeps (they are never wanted again:
        only jobs the history keeps are offered)."""
        kept = set(job_ids)
        with self._lock:
            for job_id in [job_id for job_id in self._jobs if job_id not in kept]:
                del self._jobs[job_id]

    def view(self, generation: object) -> ReasonsView:
        with self._lock:
            if not self._enabled:
                state = OFF
            elif self._denied_in is generation:
                state = DENIED
            elif self._latest_without_role:
                state = NO_LOG_ROLE
            else:
                state = READING
            return ReasonsView(state, dict(self._jobs), dict(self._totals), len(self._waiting))

    # ----- kept across restarts -----

    def stored(self) -> dict[str, Any]:
        """What a restart needs, as JSON values."""
        with self._lock:
            return {
                "pool_name": self._pool_name,
                "totals": [[*key, users] for key, users in sorted(self._totals.items())],
                "jobs": [
                    {
                        "job_id": reasons.job_id,
                        "counts": [[*key, users] for key, users in sorted(reasons.counts.items())],
                        "examples": [
                            [e.line, e.outcome, e.reason, e.text] for e in reasons.examples
                        ],
                        "complete": reasons.complete,
                        "problem": reasons.problem,
                    }
                    for reasons in self._jobs.values()
                ],
            }

    def restore(self, stored: object) -> None:
        """Take back what `stored()` gave; ValueError, and nothing taken, when it is not that."""
        try:
            document = _Stored.model_validate(stored)
        except ValidationError as error:
            raise ValueError(f"reasons.{describe_validation_errors(error)[0]}") from None
        jobs = {
            job.job_id: JobReasons(
                job.job_id,
                _counts(job.counts),
                tuple(_example(*example) for example in job.examples),
                job.complete,
                job.problem,
            )
            for job in document.jobs
        }
        totals = Counter(_counts(document.totals))
        with self._lock:
            self._pool_name = document.pool_name
            self._totals = totals
            self._jobs = jobs


def _counts(rows: list[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for outcome, reason, users in rows:
        if outcome not in ROW_OUTCOMES or reason not in REASONS:
            raise ValueError(f"reasons: {outcome}/{reason} is not an outcome and reason")
        counts[(outcome, reason)] = counts.get((outcome, reason), 0) + users
    return counts


# strict values in lists read from JSON (a strict model would take no list for a tuple)
def _example(line: int, outcome: str, reason: str, text: str) -> Example:
    if outcome not in ROW_OUTCOMES or reason not in REASONS:
        raise ValueError(f"reasons: {outcome}/{reason} is not an outcome and reason")
    return Example(line, outcome, reason, example_text(text))


_Users = Annotated[int, Field(strict=True, ge=0, lt=_MAX_COUNT)]
_Name = Annotated[str, Field(strict=True, max_length=64)]
_Count = tuple[_Name, _Name, _Users]
_Text = Annotated[str, Field(strict=True, max_length=4 * EXAMPLE_CHARS)]


class _StoredJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: Annotated[str, Field(strict=True, min_length=1, max_length=256)]
    counts: Annotated[list[_Count], Field(max_length=len(ROW_OUTCOMES) * len(REASONS))]
    examples: Annotated[list[tuple[_Users, _Name, _Name, _Text]], Field(max_length=50)]
    complete: Annotated[bool, Field(strict=True)]
    problem: _Text | None = None


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_name: Annotated[str, Field(strict=True, max_length=128)] | None
    totals: Annotated[list[_Count], Field(max_length=len(ROW_OUTCOMES) * len(REASONS))]
    jobs: Annotated[list[_StoredJob], Field(max_length=MAX_STORED_JOBS)]
