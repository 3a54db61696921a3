"""What is known of one pool's import jobs between scrapes, and how a scrape brings it up to date.

The service lists jobs newest first, and jobs in a terminal status never change again. So after
one full read, the bottom of the list where every job is terminal (the tail) is kept only as
totals (jobs per status, user sums); above it (the head) the history keeps each job, down to
the deepest one still active. Later scans read steadily (`exporter.collect.reading`): a page
from the top to meet the newest known job, and the known active jobs refreshed: one call per
pool in the steady state. When the list is not what the history knows, the pool is read in
full again; and every `full_resync_interval` anyway. Memory grows with active jobs, not with
history. A full read that a deadline (or an error) interrupts is resumed from its last token
at the next scan, so a large pool's first read spreads over scans without paying twice; jobs
created meanwhile sit above where it started, and the next steady scan picks them up.
"""

from __future__ import annotations

import math
import operator
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from exporter.cognito.jobs import DescribeNotAllowed, Job, PagingError
from exporter.collect.reading import (
    FullRead,
    Inconsistent,
    ListReader,
    SteadyRead,
    read_in_full,
    read_steadily,
)

OUTCOMES = ("imported", "skipped", "failed")


_status = operator.attrgetter("status")
_imported = operator.attrgetter("imported")
_skipped = operator.attrgetter("skipped")
_failed = operator.attrgetter("failed")


@dataclass
class Totals:
    statuses: Counter[str] = field(default_factory=Counter)
    users: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, jobs: Sequence[Job]) -> Totals:
        return cls(
            Counter(map(_status, jobs)),
            Counter(
                imported=sum(map(_imported, jobs)),
                skipped=sum(map(_skipped, jobs)),
                failed=sum(map(_failed, jobs)),
            ),
        )

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.statuses + other.statuses, self.users + other.users)


@dataclass(frozen=True)
class StatusChange:
    """A job seen in a new status since the previous scan (old_status None: a new job)."""

    job: Job
    old_status: str | None


@dataclass(frozen=True)
class ScanOutcome:
    statuses: dict[str, int]
    users_total: dict[str, int]
    jobs: tuple[Job, ...]
    pages: int
    describes: int
    full: bool
    changes: tuple[StatusChange, ...]
    ordering_broken: bool


@dataclass(frozen=True)
class HistoryState:
    """What a history knows of its pool, to keep across a restart."""

    head: tuple[Job, ...]
    tail: Totals
    tail_recent: tuple[Job, ...]
    boundary: Job | None
    ordered: bool
    next_full_scan: float
    last_full_scan: float | None
    users_total: Counter[str]
    last_scan: float | None = None


def _users(job: Job) -> Counter[str]:
    return Counter(imported=job.imported, skipped=job.skipped, failed=job.failed)


def _growth(now: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({outcome: max(0, now[outcome] - before[outcome]) for outcome in OUTCOMES})


class PoolHistory:
    def __init__(self, pool_id: str, keep_recent: int, full_scan_interval: float) -> None:
        self.pool_id = pool_id
        self._keep_recent = keep_recent
        self._full_scan_interval = full_scan_interval
        self._head: tuple[Job, ...] = ()
        self._tail = Totals()
        self._tail_recent: tuple[Job, ...] = ()
        self._boundary: Job | None = None
        self._scanned = False
        self._ordered = False
        self._next_full_scan = 0.0
        self._last_full_scan: float | None = None
        self._last_scan: float | None = None
        self._users_total: Counter[str] = Counter()
        self._unfinished: FullRead | None = None
        self._describe_denied = False

    @property
    def describe_denied(self) -> bool:
        """DescribeUserImportJob answered AccessDenied or NotAuthorized: deep active jobs are
        paged to instead."""
        return self._describe_denied

    @property
    def last_scan(self) -> float | None:
        """When the history was last brought up to date (None: never)."""
        return self._last_scan

    @property
    def active(self) -> bool:
        """Whether a known job may still change (Created, Pending, InProgress, Stopping)."""
        return any(not job.terminal for job in self._head)

    @property
    def last_change(self) -> float | None:
        """When the newest known job last moved, in seconds since the epoch."""
        changes = [job.last_change for job in (*self._head, *self._tail_recent[:1])]
        return max((change for change in changes if change is not None), default=None)

    @property
    def job_count(self) -> int:
        return sum(self._tail.statuses.values()) + len(self._head)

    def view(self) -> ScanOutcome | None:
        """What the history knows now, as a scan that read nothing would tell it."""
        if not self._scanned:
            return None
        return self._outcome(pages=0, describes=0, full=False, changes=(), ordering_broken=False)

    def configure(self, keep_recent: int, full_scan_interval: float) -> None:
        """New settings (a reload, or the interval the budget affords), in force from the next
        scan: the next full read keeps its place in the interval, so a shorter one brings it
        forward; keeping more recent jobs than the tail remembers reads the pool in full once."""
        last, old = self._last_full_scan, self._full_scan_interval
        if full_scan_interval != old and last is not None:
            place = (self._next_full_scan - last) / old if old > 0 and self._next_full_scan else 0
            self._next_full_scan = last + full_scan_interval * (place or self._spread())
        tail_jobs = sum(self._tail.statuses.values())
        if keep_recent > self._keep_recent and tail_jobs > len(self._tail_recent):
            self._next_full_scan = 0.0
        self._tail_recent = self._tail_recent[:keep_recent]
        self._keep_recent = keep_recent
        self._full_scan_interval = full_scan_interval

    def state(self) -> HistoryState:
        return HistoryState(
            head=self._head,
            tail=Totals(Counter(self._tail.statuses), Counter(self._tail.users)),
            tail_recent=self._tail_recent,
            boundary=self._boundary,
            ordered=self._ordered,
            next_full_scan=self._next_full_scan,
            last_full_scan=self._last_full_scan,
            users_total=Counter(self._users_total),
            last_scan=self._last_scan,
        )

    def restore(self, state: HistoryState, now: float) -> None:
        """Take back a state, as if the pool had been scanned before; the next scan checks it
        against the list as every scan does (its boundary must still be there)."""
        self._head, self._boundary, self._ordered = state.head, state.boundary, state.ordered
        self._tail = Totals(Counter(state.tail.statuses), Counter(state.tail.users))
        self._tail_recent = state.tail_recent[: self._keep_recent]
        self._users_total = Counter(state.users_total)
        self._last_full_scan = state.last_full_scan
        self._last_scan = state.last_scan
        # a full read that fell due while the exporter was down comes within the next
        # interval, spread over the pools, not for every pool at once; so does one due further
        # off than an interval (a clock that was ahead, an interval shortened since)
        on_schedule = now < state.next_full_scan <= now + self._full_scan_interval
        self._next_full_scan = state.next_full_scan if on_schedule else self._spread_from(now)
        # written while fewer recent jobs were kept than now: the tail must be read to find them
        tail_jobs = sum(self._tail.statuses.values())
        if len(self._tail_recent) < min(self._keep_recent, tail_jobs):
            self._next_full_scan = 0.0
        self._scanned = True

    def full_scan_due(self, now: float) -> bool:
        return not self._ordered or now >= self._next_full_scan

    def scan(
        self,
        reader: ListReader,
        max_pages: int,
        jobs_per_page: int,
        now: float,
        max_listed_jobs: int | None = None,
    ) -> ScanOutcome:
        """Bring the history up to date, one scan at a time. Raises on any failure, leaving
        the history as it was."""
        pages = 0
        if not self.full_scan_due(now):
            try:
                steady = self._read_steadily(reader, max_pages, jobs_per_page)
            except Inconsistent as moved:
                pages = moved.pages
            else:
                return self._absorb_steady(steady, now)
        read = self._resumable_read(now)
        pages_before = read.pages
        try:
            # max_pages bounds the whole read, resumed or not, so what it keeps is bounded
            read_in_full(reader, max_pages, read, max_listed_jobs)
        except PagingError:
            self._unfinished = None
            raise
        finally:
            pages += read.pages - pages_before
        self._unfinished = None
        outcome = self._absorb(read.fresh, now, full=True, ordered=read.ordered, pages=pages)
        if pages_before == 0 or not read.ordered:
            return outcome
        # A read resumed from an earlier scrape holds that scrape's view of the newest jobs:
        # catch up on them now rather than a scrape later. The full read stands if this fails.
        try:
            steady = self._read_steadily(reader, max_pages, jobs_per_page)
        except Exception:  # the catch-up is extra; its calls are counted where they are made
            return outcome
        caught_up = self._absorb_steady(steady, now)
        return replace(
            caught_up,
            pages=outcome.pages + caught_up.pages,
            full=True,
            changes=outcome.changes + caught_up.changes,
        )

    def _read_steadily(self, reader: ListReader, max_pages: int, jobs_per_page: int) -> SteadyRead:
        """A steady read; once a describe is denied, the pool's deep active jobs are paged to
        from then on (this read is made again that way)."""
        if not self._describe_denied:
            try:
                return read_steadily(reader, max_pages, self._head, self._boundary, jobs_per_page)
            except DescribeNotAllowed:
                self._describe_denied = True
        return read_steadily(
            reader, max_pages, self._head, self._boundary, jobs_per_page, describe=False
        )

    def _resumable_read(self, now: float) -> FullRead:
        unfinished = self._unfinished
        if unfinished is None or now - unfinished.started >= self._full_scan_interval:
            unfinished = FullRead(started=now)
            self._unfinished = unfinished
        return unfinished

    def _absorb_steady(self, steady: SteadyRead, now: float) -> ScanOutcome:
        return self._absorb(
            steady.jobs,
            now,
            full=False,
            ordered=True,
            pages=steady.pages,
            describes=steady.describes,
        )

    def _absorb(
        self,
        fresh: list[Job],
        now: float,
        *,
        full: bool,
        ordered: bool,
        pages: int,
        describes: int = 0,
    ) -> ScanOutcome:
        changes = self._changes(fresh) if self._scanned else ()
        self._users_total += self._users_added(fresh, full=full)
        base_tail = Totals() if full else self._tail
        base_recent = () if full else self._tail_recent
        split = _start_of_terminal_run(fresh)
        newly_immutable = fresh[split:]
        self._tail = base_tail + Totals.of(newly_immutable)
        self._tail_recent = (*newly_immutable[: self._keep_recent], *base_recent)[
            : self._keep_recent
        ]
        if newly_immutable:
            self._boundary = newly_immutable[0]
        elif full:
            self._boundary = None
        self._head = tuple(fresh[:split])
        self._scanned = True
        self._last_scan = now
        if full:
            self._ordered = ordered
            self._next_full_scan = self._next_after_full_read(now)
            self._last_full_scan = now
        return self._outcome(
            pages=pages,
            describes=describes,
            full=full,
            changes=changes,
            ordering_broken=full and not ordered,
        )

    def _outcome(
        self,
        *,
        pages: int,
        describes: int,
        full: bool,
        changes: tuple[StatusChange, ...],
        ordering_broken: bool,
    ) -> ScanOutcome:
        everything = self._tail + Totals.of(self._head)
        return ScanOutcome(
            statuses=dict(everything.statuses),
            users_total={outcome: self._users_total[outcome] for outcome in OUTCOMES},
            jobs=self._head + self._tail_recent,
            pages=pages,
            describes=describes,
            full=full,
            changes=changes,
            ordering_broken=ordering_broken,
        )

    def _users_added(self, fresh: list[Job], *, full: bool) -> Counter[str]:
        """What this scan adds to the user totals. Jobs that left the list are never
        subtracted; growth of known jobs and every new job's users are added."""
        if not self._scanned:
            return Totals.of(fresh).users
        known = {job.job_id: job for job in self._head}
        added: Counter[str] = Counter()
        still_in_tail: Counter[str] = Counter()
        for job in fresh:
            previous = known.get(job.job_id)
            if previous is not None:
                added += _growth(_users(job), _users(previous))
            elif full and self._boundary is not None and not self._boundary.created_before(job):
                still_in_tail += _users(job)
            else:
                added += _users(job)
        if full:
            added += _growth(still_in_tail, self._tail.users)
        return added

    def _next_after_full_read(self, now: float) -> float:
        """The first read takes the pool's place in the stagger; a read that was due keeps
        it, however late (after an outage every pool is late, and they must not stay in step)."""
        due, interval = self._next_full_scan, self._full_scan_interval
        if not due:
            return now + interval * self._spread()
        if due <= now and interval > 0:
            return due + interval * (math.floor((now - due) / interval) + 1)
        return now + interval

    def _spread_from(self, now: float) -> float:
        return now + self._full_scan_interval * (self._spread() - 0.5)

    def _spread(self) -> float:
        return 0.5 + (zlib.crc32(self.pool_id.encode()) % 1000) / 2000

    def _changes(self, fresh: list[Job]) -> tuple[StatusChange, ...]:
        known = {job.job_id: job for job in (*self._head, *self._tail_recent)}
        boundary = self._boundary
        changes = []
        for job in fresh:
            if boundary is not None and job.job_id == boundary.job_id:
                break
            previous = known.get(job.job_id)
            if previous is None:
                if boundary is not None and job.created_before(boundary):
                    continue
                changes.append(StatusChange(job, None))
            elif previous.status != job.status:
                changes.append(StatusChange(job, previous.status))
        return tuple(changes)


def _start_of_terminal_run(jobs: list[Job]) -> int:
    split = len(jobs)
    while split > 0 and jobs[split - 1].terminal:
        split -= 1
    return split
