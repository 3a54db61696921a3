"""Building job records and paged job lists for tests that need no HTTP."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.cognito.jobs import Job, Page

BASE_TIME = 1_700_000_000.0


def job(
    index: int,
    status: str = "Succeeded",
    imported: int = 10,
    skipped: int = 1,
    failed: int = 0,
    created: float | None = None,
) -> Job:
    created_at = BASE_TIME + index * 60 if created is None else created
    finished = status in {"Succeeded", "Failed", "Stopped"}
    return Job(
        job_id=f"import-{index:04d}",
        name=f"job {index}",
        status=status,
        created=created_at,
        started=created_at + 5 if status not in {"Created", "Expired"} else None,
        completed=created_at + 30 if finished else None,
        imported=imported,
        skipped=skipped,
        failed=failed,
        completion_message=None,
    )


class PagedList:
    """A pool's job list served newest first in pages, and its jobs described one by one,
    counting the calls made (`calls` pages, `describes` jobs). With `trailing_token`, the
    last page carries a token too, and the page after it is empty."""

    def __init__(
        self, jobs: Sequence[Job], page_size: int = 3, trailing_token: bool = False
    ) -> None:
        self.jobs = list(jobs)
        self.page_size = page_size
        self.trailing_token = trailing_token
        self.calls = 0
        self.describes = 0

    def page(self, token: str | None) -> Page:
        self.calls += 1
        start = int(token) if token else 0
        end = start + self.page_size
        chunk = tuple(self.jobs[start:end])
        more = end < len(self.jobs) or (self.trailing_token and start < len(self.jobs))
        return Page(chunk, str(end) if more else None)

    def job(self, job_id: str) -> Job | None:
        self.describes += 1
        return next((item for item in self.jobs if item.job_id == job_id), None)


class Pages:
    """A list served by a function of the token, with nothing to describe."""

    def __init__(self, page: Callable[[str | None], Page]) -> None:
        self.page = page

    def job(self, job_id: str) -> Job | None:
        return None
