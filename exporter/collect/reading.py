"""Reading a pool's job list, newest first: in full from the top, or steadily from what is
already known.

A full read pages to the end; it can be resumed from its last token when a deadline cuts it
short, and it ends with `PaginationLoop` when the service repeats a token or a whole page of
jobs, with `MaxPagesExceeded` past the pool's bound. A steady read pages only until it meets
the newest job already known, then refreshes the known jobs that are still active further
down the list: by paging on to them, or by describing them one by one
(DescribeUserImportJob), whichever costs fewer calls. Whatever does not match what is known
(a finished job that changed, known jobs gone or out of order) raises `Inconsistent`, and
the caller reads the pool in full instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporter.cognito.jobs import SERVICE_PAGE_JOBS, Job, Page, PagingError


class ListReader(Protocol):
    """The calls a read makes: one page of the list, and one job described."""

    def page(self, token: str | None) -> Page: ...

    def job(self, job_id: str) -> Job | None:
        """The job as DescribeUserImportJob tells it now; None when the pool has it no more."""


class Inconsistent(Exception):
    """The list is not what the history knows of it: read it in full."""

    def __init__(self, pages: int, reason: str) -> None:
        super().__init__(reason)
        self.pages = pages


@dataclass
class PageCursor:
    """Where paging down the list stands: the next token, pages read, tokens seen."""

    token: str | None = None
    pages: int = 0
    seen_tokens: set[str] = field(default_factory=set)


@dataclass
class FullRead(PageCursor):
    """How far a read from the top has come; a read interrupted by the deadline or an error is
    resumed from here at the next scrape instead of paging again from the top."""

    started: float = 0.0
    fresh: list[Job] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    ordered: bool = True
    previous_created: float = float("inf")


@dataclass(frozen=True)
class SteadyRead:
    """The jobs above the history's tail as they are now (new jobs first, then the known ones,
    refreshed where they were active), and the calls it took."""

    jobs: list[Job]
    pages: int
    describes: int


def read_in_full(
    reader: ListReader, max_pages: int, read: FullRead, max_listed_jobs: int | None = None
) -> FullRead:
    """Page down from where `read` stands to the end of the list. On return `read.fresh`
    holds every job once, and `read.ordered` whether creation dates never rose down the list.
    A job seen twice is skipped: jobs created while a read pages shift the list down. More
    than `max_listed_jobs` jobs, or more than `max_pages` pages, end it as MaxPagesExceeded."""
    for page in pages_of(reader, max_pages, read):
        if page.jobs and all(job.job_id in read.seen_ids for job in page.jobs):
            raise PagingError("PaginationLoop", "the service repeated a page of import jobs")
        for job in page.jobs:
            if job.job_id in read.seen_ids:
                continue
            if job.created is not None:
                if job.created > read.previous_created:
                    read.ordered = False
                read.previous_created = job.created
            read.seen_ids.add(job.job_id)
            read.fresh.append(job)
        if max_listed_jobs is not None and len(read.fresh) > max_listed_jobs:
            raise PagingError("MaxPagesExceeded", f"more than {max_listed_jobs} import jobs")
    return read


def pages_of(reader: ListReader, max_pages: int, cursor: PageCursor) -> Iterator[Page]:
    """The pages from where `cursor` stands to the last, the cursor kept up to date; more than
    `max_pages` pages end as MaxPagesExceeded, a token seen before as PaginationLoop."""
    while True:
        if cursor.pages >= max_pages:
            raise PagingError("MaxPagesExceeded", f"more than {cursor.pages} pages of import jobs")
        page = reader.page(cursor.token)
        cursor.pages += 1
        yield page
        token = page.next_token
        if token is None:
            return
        if token in cursor.seen_tokens:
            raise PagingError("PaginationLoop", "the service repeated a pagination token")
        cursor.seen_tokens.add(token)
        cursor.token = token


def read_steadily(
    reader: ListReader,
    max_pages: int,
    head: Sequence[Job],
    boundary: Job | None,
    jobs_per_page: int,
    *,
    describe: bool = True,
) -> SteadyRead:
    """The list down to the newest known job, and the known active jobs refreshed.

    `head` is what the history knows above its tail, newest first; `boundary` the newest
    job of the tail. `jobs_per_page` is what one page holds, to reckon how deep a job sits.
    Without `describe`, deep active jobs are refreshed by paging down to them. Raises
    `DescribeNotAllowed` when a describe is denied.
    """
    known_top = head[0] if head else boundary
    if known_top is None:
        raise Inconsistent(0, "nothing known of the pool yet")
    steady = _Steady(head, boundary)
    cursor = PageCursor()
    for page in pages_of(reader, max_pages, cursor):
        steady.take(page.jobs, cursor.pages)
        if steady.reached_tail or (
            steady.met and _paged_enough(steady, jobs_per_page, cursor.pages, describe=describe)
        ):
            break
    else:
        if not steady.met or steady.unrefreshed_active():
            raise Inconsistent(cursor.pages, "the known jobs are not all in the list any more")
    pages = cursor.pages
    describes = 0
    for index in steady.unrefreshed_active():
        described = reader.job(head[index].job_id)
        describes += 1
        if described is None or described.created != head[index].created:
            raise Inconsistent(pages, "a known active job is gone")
        if described.job_id != head[index].job_id:
            raise Inconsistent(pages, "a job was described as another")
        steady.refreshed[described.job_id] = described
    jobs = steady.new + [steady.refreshed.get(job.job_id, job) for job in head]
    return SteadyRead(jobs, pages, describes)


class _Steady:
    """What a steady read has seen so far, checked against what the history knows."""

    def __init__(self, head: Sequence[Job], boundary: Job | None) -> None:
        self.head = head
        self.boundary = boundary
        self.known_top = head[0] if head else boundary
        self.known_ids = {job.job_id for job in head}
        self.new: list[Job] = []
        self.new_ids: set[str] = set()
        self.refreshed: dict[str, Job] = {}
        self.next_known = 0
        self.met = False
        self.reached_tail = False
        self.previous_created = float("inf")

    def take(self, jobs: Sequence[Job], pages: int) -> None:
        for job in jobs:
            if self.reached_tail:
                return
            if not self.met and not self._meets(job, pages):
                self._new_job(job, pages)
            else:
                self._known_job(job, pages)

    def unrefreshed_active(self) -> list[int]:
        """Indexes in the head of active jobs the read has not refreshed yet, shallowest first."""
        return [
            index
            for index in range(self.next_known, len(self.head))
            if not self.head[index].terminal
        ]

    def _meets(self, job: Job, pages: int) -> bool:
        assert self.known_top is not None
        if job.job_id == self.known_top.job_id:
            self.met = True
            return True
        if job.job_id in self.known_ids or (
            self.boundary is not None and job.job_id == self.boundary.job_id
        ):
            raise Inconsistent(pages, "the newest known job is gone")
        return False

    def _new_job(self, job: Job, pages: int) -> None:
        if job.job_id in self.new_ids:
            return
        assert self.known_top is not None
        if job.created_before(self.known_top):
            raise Inconsistent(pages, "a job older than the newest known one appeared")
        if job.created is not None:
            if job.created > self.previous_created:
                raise Inconsistent(pages, "jobs out of creation order")
            self.previous_created = job.created
        self.new.append(job)
        self.new_ids.add(job.job_id)

    def _known_job(self, job: Job, pages: int) -> None:
        if self.next_known < len(self.head):
            expected = self.head[self.next_known]
            if job.job_id != expected.job_id:
                if job.job_id in self.refreshed or job.job_id in self.new_ids:
                    return  # shifted down from the page before
                raise Inconsistent(pages, "known jobs out of their order")
            if expected.terminal and _changed(job, expected):
                raise Inconsistent(pages, "a finished job changed")
            self.refreshed[job.job_id] = job
            self.next_known += 1
            return
        if self.boundary is not None and job.job_id == self.boundary.job_id:
            if _changed(job, self.boundary):
                raise Inconsistent(pages, "a finished job changed")
            self.reached_tail = True
            return
        if job.job_id not in self.refreshed and job.job_id not in self.new_ids:
            raise Inconsistent(pages, "the newest finished job is gone")


def _paged_enough(steady: _Steady, jobs_per_page: int, pages_read: int, *, describe: bool) -> bool:
    if not describe:
        return not steady.unrefreshed_active()
    return _more_pages(steady, jobs_per_page, pages_read) == 0


def _more_pages(steady: _Steady, jobs_per_page: int, pages_read: int) -> int:
    """How many more pages to read: paging down to a deep active job refreshes it and every
    one above it; describing costs a call a job. The cheapest mix of the two; on a tie,
    describing (it reads less)."""
    deep = steady.unrefreshed_active()
    best_extra, best_cost = 0, len(deep)
    for rank, index in enumerate(deep):
        page_of_job = (len(steady.new) + index) // jobs_per_page
        extra = max(0, page_of_job + 1 - pages_read)
        cost = extra + len(deep) - rank - 1
        if cost < best_cost:
            best_extra, best_cost = extra, cost
    return best_extra


def _changed(job: Job, known: Job) -> bool:
    return job.status != known.status or job.created != known.created


def jobs_per_page(page_size: int) -> int:
    """What one answer holds: the page size asked for, and at most what the service sends."""
    return max(1, min(page_size, SERVICE_PAGE_JOBS))


def page_bound(max_listed_jobs: int, page_size: int) -> int:
    """Pages a full read of `max_listed_jobs` jobs takes, and one more: the service may send a token
    on the last page and answer the next call with no jobs."""
    return -(-max_listed_jobs // jobs_per_page(page_size)) + 1
