"""The simulator's model, driven and checked directly: no socket, no botocore."""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import replace

import pytest

from exporter.demo.lifecycle import (
    EXPIRED_MESSAGE,
    FAILED_MESSAGE,
    STOPPED_MESSAGE,
    SUCCEEDED_MESSAGE,
    JsonObject,
    Lifecycle,
    split_users,
)
from exporter.demo.model import CognitoModel, ServiceError
from tests.simulator_cases import LIFECYCLE, OTHER_POOL, POOL, START, FakeClock, add_history


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model(clock: FakeClock) -> CognitoModel:
    cognito = CognitoModel(clock, seed=7, lifecycle=LIFECYCLE)
    cognito.add_pool(POOL, "customers", {"team": "identity", "env": "prod"})
    cognito.add_pool(OTHER_POOL, "partners", spawning=False)
    return cognito


def every_page(model: CognitoModel, pool_id: str, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    page, cursor, more = model.jobs_older_than(pool_id, limit, None)
    while True:
        pages.append([str(job["JobId"]) for job in page])
        if not more:
            return pages
        page, cursor, more = model.jobs_older_than(pool_id, limit, cursor)


def new_job(model: CognitoModel, clock: FakeClock, name: str = "nightly") -> str:
    """A job created now, that follows the lifecycle (as CreateUserImportJob makes one)."""
    return model.add_job(POOL, name=name, status="Created", created=clock(), live=True)


def job_of(model: CognitoModel, job_id: str) -> JsonObject:
    return model.describe_job(POOL, job_id)


def progress(job: JsonObject) -> tuple[object, object, object, object]:
    return job["Status"], job["ImportedUsers"], job["SkippedUsers"], job["FailedUsers"]


# ----- paging -----


@pytest.mark.parametrize(("limit", "page_count"), [(1, 130), (7, 19), (60, 3)])
def test_paging_returns_every_job_once_newest_first(
    model: CognitoModel, limit: int, page_count: int
) -> None:
    newest_first = add_history(model, POOL, 130)
    pages = every_page(model, POOL, limit)
    assert [job_id for page in pages for job_id in page] == newest_first
    assert len(pages) == page_count
    assert [len(page) for page in pages[:-1]] == [limit] * (page_count - 1)


def test_paging_is_stable_when_jobs_are_created_between_pages(
    model: CognitoModel, clock: FakeClock
) -> None:
    history = add_history(model, POOL, 130)
    first, cursor, more = model.jobs_older_than(POOL, 7, None)
    new_ids = [new_job(model, clock, f"arrival-{n}") for n in range(3)]
    seen = [str(job["JobId"]) for job in first]
    while more:
        page, cursor, more = model.jobs_older_than(POOL, 7, cursor)
        seen += [str(job["JobId"]) for job in page]
    assert seen == history
    assert [job_id for page in every_page(model, POOL, 60) for job_id in page] == [
        *new_ids[::-1],
        *history,
    ]


def test_concurrent_paging_sees_every_job_once_while_jobs_arrive(
    model: CognitoModel, clock: FakeClock
) -> None:
    history = add_history(model, POOL, 130)
    listings: list[list[str]] = []
    arrived: list[str] = []

    def page_through() -> None:
        listings.append([job_id for page in every_page(model, POOL, 3) for job_id in page])

    readers = [threading.Thread(target=page_through) for _ in range(4)]
    for reader in readers:
        reader.start()
    arrived += [new_job(model, clock, f"arrival-{n}") for n in range(20)]
    for reader in readers:
        reader.join()
    for seen in listings:
        assert [job_id for job_id in seen if job_id not in arrived] == history
        assert len(seen) == len(set(seen))


def test_unknown_pools_and_jobs_are_resource_not_found(model: CognitoModel) -> None:
    with pytest.raises(ServiceError) as missing_pool:
        model.jobs_older_than("eu-west-1_Missing1", 5, None)
    with pytest.raises(ServiceError) as missing_job:
        model.describe_job(POOL, "import-DoesNotExist")
    assert (missing_pool.value.code, missing_job.value.code) == ("ResourceNotFoundException",) * 2


def test_pools_are_listed_in_creation_order(model: CognitoModel) -> None:
    for n in range(3):
        model.add_pool(f"eu-west-1_Extra{n}", f"extra-{n}")
    first, count = model.pools_from(0, 2)
    second, _ = model.pools_from(2, 2)
    assert count == 5
    assert [pool["Id"] for pool in first + second] == [
        POOL,
        OTHER_POOL,
        "eu-west-1_Extra0",
        "eu-west-1_Extra1",
    ]
    described = model.describe_pool(POOL)
    assert described["UserPoolTags"] == {"team": "identity", "env": "prod"}
    assert described["Arn"] == f"arn:aws:cognito-idp:eu-west-1:123456789012:userpool/{POOL}"


# ----- the lifecycle -----


def test_a_started_job_goes_pending_then_in_progress_then_succeeds(
    model: CognitoModel, clock: FakeClock
) -> None:
    job_id = new_job(model, clock)
    created = job_of(model, job_id)
    clock.set(START + 1)
    model.set_job(POOL, job_id, status="Pending")
    observed = []
    for at in [START + 5.999, START + 6, START + 7, START + 11, START + 15.99, START + 16]:
        clock.set(at)
        observed.append(progress(job_of(model, job_id)))
    finished = job_of(model, job_id)
    assert progress(created) == ("Created", 0, 0, 0)
    assert "StartDate" not in created
    assert observed == [
        ("Pending", 0, 0, 0),
        ("InProgress", 0, 0, 0),
        ("InProgress", 85, 10, 5),
        ("InProgress", 425, 50, 25),
        ("InProgress", 850, 99, 50),
        ("Succeeded", 850, 100, 50),
    ]
    assert (finished["StartDate"], finished["CompletionDate"]) == (START + 1, START + 16)
    assert finished["CompletionMessage"] == SUCCEEDED_MESSAGE


def test_a_clock_jump_passes_every_phase_with_exact_dates(
    model: CognitoModel, clock: FakeClock
) -> None:
    job_id = new_job(model, clock)
    model.set_job(POOL, job_id, status="Pending")
    clock.set(START + 1000)
    job = job_of(model, job_id)
    assert progress(job) == ("Succeeded", 850, 100, 50)
    assert (job["StartDate"], job["CompletionDate"]) == (START, START + 15)


def test_a_failing_job_stops_partway_with_a_message(model: CognitoModel, clock: FakeClock) -> None:
    model.lifecycle = replace(LIFECYCLE, failure_probability=1.0)
    job_id = new_job(model, clock)
    model.set_job(POOL, job_id, status="Pending")
    clock.set(START + 1000)
    job = job_of(model, job_id)
    imported, skipped, failed = (
        int(str(job[key])) for key in ["ImportedUsers", "SkippedUsers", "FailedUsers"]
    )
    processed = imported + skipped + failed
    assert (job["Status"], job["CompletionMessage"]) == ("Failed", FAILED_MESSAGE)
    assert 200 <= processed <= 800
    assert (imported, skipped, failed) == split_users(processed, 0.1, 0.05)
    assert job["CompletionDate"] == pytest.approx(START + 5 + processed / 100, abs=1e-6)


def test_a_created_job_never_started_expires(model: CognitoModel, clock: FakeClock) -> None:
    job_id = new_job(model, clock)
    clock.set(START + 119.999)
    before = job_of(model, job_id)
    clock.set(START + 120)
    after = job_of(model, job_id)
    assert before["Status"] == "Created"
    assert progress(after) == ("Expired", 0, 0, 0)
    assert (after["CompletionDate"], after["CompletionMessage"]) == (START + 120, EXPIRED_MESSAGE)
    assert "StartDate" not in after


def test_a_stopped_job_keeps_its_counts_then_stops(model: CognitoModel, clock: FakeClock) -> None:
    job_id = new_job(model, clock)
    model.set_job(POOL, job_id, status="Pending")
    clock.set(START + 7)
    model.set_job(POOL, job_id, status="Stopping")
    stopping = job_of(model, job_id)
    clock.set(START + 9.999)
    still_stopping = job_of(model, job_id)
    clock.set(START + 10)
    stopped = job_of(model, job_id)
    assert progress(stopping) == ("Stopping", 170, 20, 10)
    assert progress(still_stopping) == ("Stopping", 170, 20, 10)
    assert progress(stopped) == ("Stopped", 170, 20, 10)
    assert (stopped["CompletionDate"], stopped["CompletionMessage"]) == (
        START + 10,
        STOPPED_MESSAGE,
    )


def test_operator_jobs_arrive_in_spawning_pools_only(model: CognitoModel, clock: FakeClock) -> None:
    model.lifecycle = replace(LIFECYCLE, new_job_every=60.0)
    model.advance()
    clock.set(START + 605)
    jobs = [job for page in [model.jobs_older_than(POOL, 60, None)[0]] for job in page]
    clock.set(START + 612)
    newest = job_of(model, str(jobs[0]["JobId"]))
    assert [job["CreationDate"] for job in jobs] == [START + 60 * n for n in range(10, 0, -1)]
    assert [job["Status"] for job in jobs] == ["Created"] + ["Succeeded"] * 9
    assert [job["JobName"] for job in jobs[-2:]] == [
        "customers-import-0002",
        "customers-import-0001",
    ]
    assert (jobs[1]["StartDate"], jobs[1]["CompletionDate"]) == (START + 550, START + 565)
    assert (newest["Status"], newest["StartDate"]) == ("Pending", START + 610)
    assert model.jobs_older_than(OTHER_POOL, 60, None) == ([], None, False)


def test_an_abandoned_operator_job_expires(model: CognitoModel, clock: FakeClock) -> None:
    model.lifecycle = replace(LIFECYCLE, new_job_every=1000.0, abandon_probability=1.0)
    model.advance()
    clock.set(START + 1000)
    model.advance()
    [job] = model.jobs(POOL)
    assert job["Status"] == "Created"
    clock.set(START + 1120)
    model.advance()
    assert model.jobs(POOL)[0]["Status"] == "Expired"


def test_the_same_seed_draws_the_same_jobs() -> None:
    def drawn(seed: int) -> list[JsonObject]:
        clock = FakeClock()
        cognito = CognitoModel(clock, seed=seed, lifecycle=Lifecycle(new_job_every=30.0))
        cognito.add_pool(POOL, "customers")
        cognito.advance()
        clock.set(START + 900)
        cognito.advance()
        return cognito.jobs(POOL)

    first, again, other = drawn(11), drawn(11), drawn(12)
    assert first == again
    assert len(first) >= 20
    assert {job["JobId"] for job in first}.isdisjoint(job["JobId"] for job in other)


def test_history_stays_put_unless_live(model: CognitoModel, clock: FakeClock) -> None:
    static_id = model.add_job(
        POOL, name="old", status="InProgress", created=START - 100, imported=100, total_users=1000
    )
    live_id = model.add_job(
        POOL,
        name="moving",
        status="InProgress",
        created=START - 100,
        imported=100,
        total_users=1000,
        live=True,
    )
    clock.set(START + 1)
    model.advance()
    assert progress(job_of(model, static_id)) == ("InProgress", 100, 0, 0)
    assert progress(job_of(model, live_id)) == ("InProgress", 185, 10, 5)


def test_set_job_changes_a_job_deep_in_history(model: CognitoModel, clock: FakeClock) -> None:
    history = add_history(model, POOL, 100)
    target = history[80]
    model.set_job(POOL, target, status="InProgress", completed=None, imported=5)
    before = model.jobs(POOL)
    clock.set(START + 50)
    model.set_job(POOL, target, status="Succeeded", imported=900, skipped=4, failed=6)
    after = job_of(model, target)
    assert progress(before[80]) == ("InProgress", 5, 1, 2)
    assert "CompletionDate" not in before[80]
    assert progress(after) == ("Succeeded", 900, 4, 6)
    assert after["CompletionDate"] == START + 50
    assert [str(job["JobId"]) for job in model.jobs(POOL)] == history
    with pytest.raises(TypeError, match="unknown fields"):
        model.set_job(POOL, target, colour="blue")
    with pytest.raises(TypeError):
        model.set_job(POOL, target, imported=-1)
    with pytest.raises(ValueError, match="unknown job status"):
        model.set_job(POOL, target, status="Exploded")


def test_jobs_have_import_ids_and_a_secret_url(model: CognitoModel, clock: FakeClock) -> None:
    job = job_of(model, new_job(model, clock))
    job_id = str(job["JobId"])
    assert job_id.startswith("import-")
    assert len(job_id) == len("import-") + 26
    assert job_id[7:].isalnum()
    assert str(job["PreSignedUrl"]).startswith("https://")
    assert "X-Amz-Signature=" in str(job["PreSignedUrl"])


def test_the_split_of_users_never_shrinks_a_part() -> None:
    splits = [split_users(count, 0.3, 0.25) for count in range(2000)]
    assert all(sum(split) == count for count, split in enumerate(splits))
    assert all(
        all(later >= earlier for earlier, later in zip(before, after, strict=True))
        for before, after in itertools.pairwise(splits)
    )
    assert splits[1000] == (450, 300, 250)
    assert math.isclose(splits[1999][0] / 1999, 0.45, abs_tol=0.001)
