from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.cognito.clients import ClientFactory, ClientKey, ClientSettings
from exporter.cognito.jobs import InvalidJobsPage, Job, _parse_carefully, fetch_page, parse_job
from exporter.config.schema import CredentialSet

POOL = "eu-west-1_Stub123"


@pytest.fixture
def client() -> Any:
    static = CredentialSet.model_validate(
        {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "example-secret"}
    )
    return ClientFactory({"static": static}, ClientSettings()).client(
        ClientKey("static", "eu-west-1", None)
    )


def raw_job(**overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "JobName": "nightly",
        "JobId": "import-AbCdEf0123456789",
        "UserPoolId": POOL,
        "PreSignedUrl": "https://bucket.example/upload?X-Amz-Signature=planted-secret",
        "CreationDate": 1700000000.5,
        "StartDate": 1700000100,
        "CompletionDate": 1700000200,
        "Status": "Succeeded",
        "CloudWatchLogsRoleArn": "arn:aws:iam::123456789012:role/CognitoImport",
        "ImportedUsers": 950,
        "SkippedUsers": 40,
        "FailedUsers": 10,
        "CompletionMessage": "done",
    }
    job.update(overrides)
    return job


def test_first_page_request_sends_pool_and_page_size_only(client: Any) -> None:
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_user_import_jobs",
            {"UserImportJobs": [raw_job()], "PaginationToken": "opaque-1"},
            expected_params={"UserPoolId": POOL, "MaxResults": 60},
        )
        page = fetch_page(client, POOL, 60, None)
        stubber.assert_no_pending_responses()
    assert page.next_token == "opaque-1"
    assert page.jobs == (
        Job(
            job_id="import-AbCdEf0123456789",
            name="nightly",
            status="Succeeded",
            created=1700000000.5,
            started=1700000100.0,
            completed=1700000200.0,
            imported=950,
            skipped=40,
            failed=10,
            completion_message="done",
            log_role_arn="arn:aws:iam::123456789012:role/CognitoImport",
        ),
    )


def test_next_page_request_carries_the_token(client: Any) -> None:
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_user_import_jobs",
            {"UserImportJobs": [raw_job(JobId="import-older", Status="Failed")]},
            expected_params={"UserPoolId": POOL, "MaxResults": 7, "PaginationToken": "opaque-1"},
        )
        page = fetch_page(client, POOL, 7, "opaque-1")
    assert [(job.job_id, job.status) for job in page.jobs] == [("import-older", "Failed")]
    assert page.next_token is None


def test_missing_jobs_key_is_an_empty_page(client: Any) -> None:
    # The service model gives UserImportJobs a minimum length of 1: a pool with no jobs
    # answers without the key.
    with Stubber(client) as stubber:
        stubber.add_response("list_user_import_jobs", {}, expected_params=None)
        assert fetch_page(client, POOL, 60, None).jobs == ()


def test_pre_signed_url_is_not_kept() -> None:
    job = parse_job(raw_job())
    assert "planted-secret" not in repr(job)


def test_missing_optional_fields_and_unknown_new_fields_are_tolerated() -> None:
    job = parse_job(
        {"JobId": "import-1", "Status": "Created", "PasswordHashingAlgorithm": "BCRYPT"}
    )
    assert (job.name, job.created, job.imported, job.skipped, job.failed) == ("", None, 0, 0, 0)


def test_explicit_nulls_read_as_absent() -> None:
    job = parse_job(raw_job(ImportedUsers=None, StartDate=None, JobName=None))
    assert (job.imported, job.skipped, job.started, job.name) == (0, 40, None, "")


def test_a_status_the_api_adds_later_passes_through() -> None:
    assert parse_job(raw_job(Status="Paused")).status == "Paused"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"JobId": None}, "has no JobId"),
        ({"Status": 7}, "has no valid Status"),
        ({"Status": "bad status!"}, "has no valid Status"),
        ({"ImportedUsers": -1}, "ImportedUsers out of range"),
        ({"FailedUsers": 2**60}, "FailedUsers out of range"),
        ({"SkippedUsers": "12"}, "SkippedUsers that is not a whole number"),
        ({"SkippedUsers": True}, "SkippedUsers that is not a whole number"),
        ({"CreationDate": "yesterday"}, "invalid CreationDate"),
    ],
)
def test_untrustworthy_jobs_are_rejected(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidJobsPage, match=reason):
        parse_job(raw_job(**overrides))


def test_a_page_larger_than_asked_and_dates_in_the_future_are_tolerated(client: Any) -> None:
    future = 4102444800.0  # 2100-01-01: a clock skew upstream, not a reason to drop the pool
    jobs = [raw_job(JobId=f"import-{index}", CreationDate=future - index) for index in range(9)]
    with Stubber(client) as stubber:
        stubber.add_response("list_user_import_jobs", {"UserImportJobs": jobs}, None)
        page = fetch_page(client, POOL, 5, None)
    assert len(page.jobs) == 9
    assert page.jobs[0].created == future


_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.sampled_from(["Succeeded", "InProgress", "Paused", "bad status!", "", "import-x"]),
    st.lists(st.integers(), max_size=2),
)
_FIELDS = (
    "JobId",
    "JobName",
    "Status",
    "CreationDate",
    "StartDate",
    "CompletionDate",
    "ImportedUsers",
    "SkippedUsers",
    "FailedUsers",
    "CompletionMessage",
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _ANY_VALUE), st.booleans())
def test_the_quick_path_reads_every_job_as_the_careful_one_does(
    changes: dict[str, Any], from_valid: bool
) -> None:
    raw = raw_job(**changes) if from_valid else changes
    try:
        expected: Job | str = _parse_carefully(raw, raw.get("JobId"))
    except InvalidJobsPage as error:
        expected = str(error)
    try:
        got: Job | str = parse_job(raw)
    except InvalidJobsPage as error:
        got = str(error)
    assert got == expected
