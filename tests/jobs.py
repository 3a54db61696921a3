"""Building job records and paged job lists for tests that need no HTTP."""

from __future__ import annotations

from collections.abc import Sequence

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
    """A pool's job list served newest first in pages, counting the calls made."""

    def __init__(self, jobs: Sequence[Job], page_size: int = 3) -> None:
        self.jobs = list(jobs)
        self.page_size = page_size
        self.calls = 0

    def __call__(self, token: str | None) -> Page:
        self.calls += 1
        start = int(token) if token else 0
        end = start + self.page_size
        chunk = tuple(self.jobs[start:end])
        return Page(chunk, str(end) if end < len(self.jobs) else None)
