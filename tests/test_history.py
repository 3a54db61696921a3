from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import replace

import pytest

from exporter.cognito.jobs import DescribeNotAllowed, Job, Page, PagingError
from exporter.collect.history import PoolHistory
from exporter.collect.ratelimit import DeadlineExceeded
from exporter.collect.served import recent_jobs
from tests.jobs import BASE_TIME, PagedList, Pages, job

NOW = BASE_TIME + 100_000


def newest_first(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=lambda item: item.created or 0, reverse=True)


def truth(jobs: list[Job]) -> tuple[dict[str, int], dict[str, int]]:
    statuses = dict(Counter(item.status for item in jobs))
    users = {
        "imported": sum(item.imported for item in jobs),
        "skipped": sum(item.skipped for item in jobs),
        "failed": sum(item.failed for item in jobs),
    }
    return statuses, users


def history(keep: int = 2, resync: float = 3600.0) -> PoolHistory:
    return PoolHistory("eu-west-1_Test1", keep_recent=keep, full_scan_interval=resync)


def test_first_scan_reads_every_page_and_counts_exactly() -> None:
    jobs = newest_first(
        [job(i) for i in range(20)] + [job(20, "InProgress", imported=3), job(21, "Created", 0, 0)]
    )
    pages = PagedList(jobs, page_size=5)
    outcome = history().scan(pages, 20, pages.page_size, NOW)
    assert pages.calls == 5
    assert (outcome.statuses, outcome.users_total) == truth(jobs)
    assert outcome.full


def test_steady_state_costs_one_call_and_stays_exact() -> None:
    jobs = newest_first([job(i) for i in range(30)])
    pages = PagedList(jobs, page_size=5)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)
    pages.calls = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 60)
    assert pages.calls == 1
    assert not outcome.full
    assert (outcome.statuses, outcome.users_total) == truth(jobs)


def test_new_jobs_and_an_old_active_job_finishing_are_counted_after_one_scan() -> None:
    old_active = job(3, "InProgress", imported=1, skipped=0)
    jobs = newest_first([job(i) for i in range(12) if i != 3] + [old_active])
    pages = PagedList(jobs, page_size=4)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)
    finished = old_active._replace(status="Failed", imported=40, failed=7, completed=BASE_TIME)
    jobs = newest_first([*(j for j in jobs if j.job_id != old_active.job_id), finished])
    jobs = newest_first([*jobs, job(12, "Pending", 0, 0), job(13)])
    pages.jobs = jobs
    pages.calls = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 60)
    assert (outcome.statuses, outcome.users_total) == truth(jobs)
    assert outcome.statuses["Failed"] == 1
    # one page meets the newest known job; describing the old active job costs one call,
    # paging down to it two more
    assert (pages.calls, pages.describes) == (1, 1)
    assert (outcome.pages, outcome.describes) == (1, 1)
    assert not outcome.full
    changes = {(c.job.job_id, c.old_status, c.job.status) for c in outcome.changes}
    assert changes == {
        ("import-0003", "InProgress", "Failed"),
        ("import-0012", None, "Pending"),
        ("import-0013", None, "Succeeded"),
    }
    pages.calls = 0
    assert pool.scan(pages, 20, pages.page_size, NOW + 120).statuses == truth(jobs)[0]
    assert pages.calls == 1


class DescribeDenied(PagedList):
    """A policy that allows ListUserImportJobs only."""

    def job(self, job_id: str) -> Job | None:
        self.describes += 1
        raise DescribeNotAllowed("AccessDenied")


def test_deep_active_jobs_are_paged_to_once_describes_are_denied() -> None:
    deep = [job(3, "InProgress", imported=1), job(9, "Created", 0, 0)]
    jobs = newest_first([job(i) for i in range(20) if i not in (3, 9)] + deep)
    pages = DescribeDenied(jobs, page_size=4)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)
    finished = deep[0]._replace(status="Succeeded", imported=30, completed=BASE_TIME)
    jobs = newest_first([*(j for j in jobs if j.job_id != deep[0].job_id), finished])
    pages.jobs = jobs
    pages.calls = pages.describes = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 60)
    # exact: one describe denied, then the list paged down to the deepest active job (the
    # 17th of 20, page 5) instead
    assert (outcome.statuses, outcome.users_total) == truth(jobs)
    assert pool.describe_denied
    assert (pages.calls, pages.describes) == (1 + 5, 1)
    pages.calls = pages.describes = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 120)
    # from then on no describe is tried: paged to the Created job, still active, on page 3
    assert (outcome.statuses, outcome.users_total) == truth(jobs)
    assert (pages.calls, pages.describes) == (3, 0)


def test_a_job_described_as_another_reads_the_pool_in_full() -> None:
    deep = job(3, "InProgress", imported=1)
    jobs = newest_first([job(i) for i in range(12) if i != 3] + [deep])
    pages = PagedList(jobs, page_size=4)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)
    other = job(30, "Succeeded", imported=99)._replace(created=deep.created)
    pages.job = lambda job_id: other  # type: ignore[method-assign]
    pages.calls = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 60)
    assert outcome.full
    assert (outcome.statuses, outcome.users_total) == truth(jobs)


def test_ordering_violation_forces_a_full_read() -> None:
    jobs = newest_first([job(i) for i in range(9)])
    pages = PagedList(jobs, page_size=3)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)
    # a job older than the newest finished one appears at the top: the order broke
    pages.jobs = [job(100, created=BASE_TIME - 10), *jobs]
    pages.calls = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 60)
    assert outcome.full
    assert outcome.ordering_broken
    assert outcome.statuses == {"Succeeded": 10}
    # until a full read shows the order again, every scan reads in full
    pages.calls = 0
    pool.scan(pages, 20, pages.page_size, NOW + 120)
    assert pages.calls == 4


def test_boundary_job_that_vanished_triggers_a_full_read_in_the_same_scan() -> None:
    jobs = newest_first([job(i) for i in range(9)])
    pages = PagedList(jobs, page_size=3)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)
    pages.jobs = jobs[1:]
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 60)
    assert outcome.full
    assert outcome.statuses == {"Succeeded": 8}


def test_full_resync_happens_on_the_interval() -> None:
    jobs = newest_first([job(i) for i in range(9)])
    pages = PagedList(jobs, page_size=3)
    pool = history(resync=600)
    pool.scan(pages, 20, pages.page_size, NOW)
    assert not pool.scan(pages, 20, pages.page_size, NOW + 200).full
    assert pool.scan(pages, 20, pages.page_size, NOW + 601).full


def test_user_totals_never_go_down_when_jobs_leave_the_list() -> None:
    jobs = newest_first([job(i, imported=100) for i in range(5)])
    pages = PagedList(jobs, page_size=10)
    pool = history(resync=0)
    first = pool.scan(pages, 20, pages.page_size, NOW)
    assert first.users_total["imported"] == 500
    pages.jobs = [job(5, imported=7), *jobs[:-2]]
    second = pool.scan(pages, 20, pages.page_size, NOW + 60)
    assert second.statuses == {"Succeeded": 4}
    assert second.users_total["imported"] == 507


def test_repeated_token_ends_paging_as_a_failure() -> None:
    def looping(token: str | None) -> Page:
        return Page((job(2 if token else 1),), "same")

    with pytest.raises(PagingError) as raised:
        history().scan(Pages(looping), 20, 3, NOW)
    assert raised.value.error_code == "PaginationLoop"


def test_max_pages_ends_paging_as_a_failure() -> None:
    pages = PagedList(newest_first([job(i) for i in range(10)]), page_size=2)
    with pytest.raises(PagingError) as raised:
        history().scan(pages, 3, pages.page_size, NOW)
    assert raised.value.error_code == "MaxPagesExceeded"
    assert pages.calls == 3


def test_a_list_of_exactly_max_pages_is_fine() -> None:
    pages = PagedList(newest_first([job(i) for i in range(6)]), page_size=2)
    assert history().scan(pages, 3, pages.page_size, NOW).statuses == {"Succeeded": 6}


def test_duplicate_jobs_across_pages_count_once() -> None:
    jobs = newest_first([job(i) for i in range(4)])

    def overlapping(token: str | None) -> Page:
        if token is None:
            return Page(tuple(jobs[:3]), "next")
        return Page(tuple(jobs[2:]), None)

    assert history().scan(Pages(overlapping), 5, 3, NOW).statuses == {"Succeeded": 4}


def test_a_failed_scan_leaves_the_history_as_it_was() -> None:
    jobs = newest_first([job(i) for i in range(6)])
    pages = PagedList(jobs, page_size=2)
    pool = history()
    pool.scan(pages, 20, pages.page_size, NOW)

    def broken(token: str | None) -> Page:
        raise RuntimeError("connection reset")

    with pytest.raises(RuntimeError):
        pool.scan(Pages(broken), 20, 3, NOW + 60)
    pages.calls = 0
    outcome = pool.scan(pages, 20, pages.page_size, NOW + 120)
    assert outcome.statuses == {"Succeeded": 6}
    assert pages.calls == 1


def test_recent_jobs_are_active_or_recently_finished_newest_first_and_bounded() -> None:
    active = job(50, "InProgress")
    fresh = job(49, created=NOW - 100)
    stale = job(48, created=NOW - 90_000)
    assert recent_jobs([active, fresh, stale], NOW, window=86_400, limit=20) == [active, fresh]
    assert recent_jobs([active, fresh, stale], NOW, window=86_400, limit=1) == [active]


def test_per_job_records_survive_folding_into_the_tail() -> None:
    jobs = newest_first([job(i, created=NOW - 1000 + i) for i in range(10)])
    pool = history(keep=3)
    outcome = pool.scan(PagedList(jobs, page_size=4), 20, 4, NOW)
    assert [item.job_id for item in outcome.jobs] == ["import-0009", "import-0008", "import-0007"]


def test_an_interrupted_first_read_resumes_where_it_stopped() -> None:
    jobs = newest_first([job(i) for i in range(12)])
    pages = PagedList(jobs, page_size=3)
    pool = history()
    budget = iter([2, 10])
    remaining = next(budget)

    def fetch_until_deadline(token: str | None) -> Page:
        nonlocal remaining
        if remaining == 0:
            raise DeadlineExceeded("the scrape's time is up")
        remaining -= 1
        return pages.page(token)

    with pytest.raises(DeadlineExceeded):
        pool.scan(Pages(fetch_until_deadline), 20, 3, NOW)
    remaining = next(budget)
    outcome = pool.scan(Pages(fetch_until_deadline), 20, 3, NOW + 60)
    assert outcome.statuses == {"Succeeded": 12}
    assert outcome.users_total == {"imported": 120, "skipped": 12, "failed": 0}
    # 2 pages before the deadline, the other 2 after, then the first again to catch up on
    # the newest jobs
    assert pages.calls == 5
    assert outcome.pages == 3


def test_a_resumed_read_catches_up_on_the_newest_jobs_at_once() -> None:
    jobs = newest_first([job(i) for i in range(11)] + [job(11, status="InProgress")])
    pages = PagedList(jobs, page_size=3)
    pool = history()
    remaining = 2

    def fetch_until_deadline(token: str | None) -> Page:
        nonlocal remaining
        if remaining == 0:
            raise DeadlineExceeded("the scrape's time is up")
        remaining -= 1
        return pages.page(token)

    with pytest.raises(DeadlineExceeded):
        pool.scan(Pages(fetch_until_deadline), 20, 3, NOW)
    pages.jobs[0] = job(11, status="Succeeded")  # the newest job ends between the scrapes
    remaining = 10
    outcome = pool.scan(Pages(fetch_until_deadline), 20, 3, NOW + 60)
    assert (outcome.statuses, outcome.users_total) == truth(pages.jobs)
    assert [(change.old_status, change.job.status) for change in outcome.changes] == [
        ("InProgress", "Succeeded")
    ]


def test_an_endless_list_is_bounded_across_resumed_reads() -> None:
    def endless(token: str | None) -> Page:
        index = int(token or 0)
        return Page((job(1000 - index),), str(index + 1))

    pool = history()
    with pytest.raises(PagingError) as raised:
        pool.scan(Pages(endless), 5, 3, NOW)
    assert raised.value.error_code == "MaxPagesExceeded"
    with pytest.raises(PagingError):
        pool.scan(Pages(endless), 5, 3, NOW + 60)


@pytest.mark.parametrize("stored_due", [NOW - 1e6, NOW + 1e7], ids=["overdue", "a year ahead"])
def test_a_restored_full_read_due_off_schedule_comes_within_the_interval(stored_due: float) -> None:
    pages = PagedList(newest_first([job(i) for i in range(12)]), page_size=4)
    first = history(resync=600.0)
    first.scan(pages, 20, pages.page_size, NOW)
    state = replace(first.state(), next_full_scan=stored_due)
    restored = history(resync=600.0)
    restored.restore(state, NOW)
    assert not restored.full_scan_due(NOW)
    assert restored.full_scan_due(NOW + 300)  # within half the interval, not a year later


def test_a_restored_full_read_on_schedule_keeps_its_time() -> None:
    pages = PagedList(newest_first([job(i) for i in range(12)]), page_size=4)
    first = history(resync=600.0)
    first.scan(pages, 20, pages.page_size, NOW)
    restored = history(resync=600.0)
    restored.restore(replace(first.state(), next_full_scan=NOW + 500), NOW)
    assert not restored.full_scan_due(NOW + 499)
    assert restored.full_scan_due(NOW + 500)


@pytest.mark.parametrize("trailing_token", [False, True])
def test_max_jobs_bounds_jobs_whatever_the_last_page_carries(trailing_token: bool) -> None:
    jobs = newest_first([job(i) for i in range(11)])
    for max_listed_jobs, fails in ((10, True), (11, False)):
        pages = PagedList(jobs, page_size=5, trailing_token=trailing_token)
        # the page bound a pool of max_listed_jobs gets: 2 or 3 pages, and one for a trailing token
        max_pages = -(-max_listed_jobs // 5) + 1
        if fails:
            with pytest.raises(PagingError) as failure:
                history().scan(pages, max_pages, 5, NOW, max_listed_jobs=max_listed_jobs)
            assert failure.value.error_code == "MaxPagesExceeded"
        else:
            outcome = history().scan(pages, max_pages, 5, NOW, max_listed_jobs=max_listed_jobs)
            assert outcome.statuses == truth(jobs)[0]


def test_a_restart_keeping_more_recent_jobs_reads_the_tail_to_find_them() -> None:
    jobs = newest_first([job(i) for i in range(30)])
    pages = PagedList(jobs, page_size=5)
    before = history(keep=2)
    before.scan(pages, 20, pages.page_size, NOW)
    after = history(keep=8)
    after.restore(before.state(), NOW + 60)
    pages.calls = 0
    outcome = after.scan(pages, 20, pages.page_size, NOW + 60)
    assert outcome.full
    assert [item.job_id for item in outcome.jobs] == [item.job_id for item in jobs[:8]]
    # a restart that keeps as many as before stays on one call
    again = history(keep=8)
    again.restore(after.state(), NOW + 120)
    pages.calls = 0
    assert not again.scan(pages, 20, pages.page_size, NOW + 120).full
    assert pages.calls == 1


def test_full_reads_stay_spread_after_an_outage_of_every_pool() -> None:
    interval, pools = 4.0, 12
    jobs = newest_first([job(i) for i in range(9)])
    pages = PagedList(jobs, page_size=3)

    def failing(token: str | None) -> Page:
        raise DeadlineExceeded("the endpoint is down")

    histories = [
        PoolHistory(f"eu-west-1_Pool{index}", keep_recent=2, full_scan_interval=interval)
        for index in range(pools)
    ]
    full_reads_by_scrape: list[int] = []
    for second in range(40):
        now = NOW + second
        down = 10 <= second < 15
        reads = 0
        for pool in histories:
            with contextlib.suppress(DeadlineExceeded):
                reads += pool.scan(Pages(failing) if down else pages, 20, 3, now).full
        full_reads_by_scrape.append(reads)
    before, recovery, after = (
        full_reads_by_scrape[4:10],
        full_reads_by_scrape[15],
        full_reads_by_scrape[16:40],
    )
    assert sum(before) > 0
    assert max(before) < pools
    assert recovery == pools  # every pool missed its read while down
    # then back in their places of the stagger: each pool once an interval, never all at once
    assert sum(after) == pools * len(after) / interval
    assert max(after) < pools
