"""FilterLogEvents as the exporter asks it (botocore's Stubber checks the exact request) and
what it accepts of an answer."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from exporter.cognito.jobs import Job, PagingError
from exporter.cognito.logs import (
    InvalidLogPage,
    LogPage,
    fetch_log_page,
    job_request,
    job_stream,
    log_group,
    parse_log_page,
)
from exporter.cognito.pools import pool_name

JOB = Job(
    "import-AbC123",
    "sync for alice@example.com",
    "Succeeded",
    1_700_000_000.0,
    1_700_000_010.0,
    1_700_000_100.5,
    10,
    2,
    3,
    None,
    "arn:aws:iam::123456789012:role/CognitoImportLogs",
)


@pytest.fixture
def client() -> Any:
    return botocore.session.get_session().create_client(
        "logs",
        region_name="eu-west-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="not-a-secret",
    )


def test_the_request_names_the_job_s_stream_rows_and_time_and_follows_the_token(
    client: Any,
) -> None:
    request = job_request(log_group("eu-west-1_Pool1", "real name"), JOB)
    expected = {
        "logGroupName": "/aws/cognito/userpools/eu-west-1_Pool1/real name",
        "logStreamNamePrefix": "import-AbC123/",
        "filterPattern": "?SKIPPED ?FAILED",
        "limit": 10_000,
        "startTime": 1_699_999_710_000,
        "endTime": 1_700_000_400_500,
    }
    row = "[FAILED] Line Number 3 - The user already exists."
    with Stubber(client) as stubber:
        # a page with no events that carries a token: the search goes on
        stubber.add_response(
            "filter_log_events", {"events": [], "nextToken": "t-1"}, expected_params=expected
        )
        stubber.add_response(
            "filter_log_events",
            {"events": [{"message": row, "timestamp": 1}]},
            expected_params={**expected, "nextToken": "t-1"},
        )
        first = fetch_log_page(client, request, None)
        second = fetch_log_page(client, request, first.next_token)
        stubber.assert_no_pending_responses()
    assert first == LogPage((), "t-1")
    assert second == LogPage((row,), None)


def test_a_job_never_started_is_searched_from_its_creation_to_the_end() -> None:
    request = job_request("group", JOB._replace(started=None, completed=None))
    assert request["startTime"] == 1_699_999_700_000
    assert "endTime" not in request


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"events": {"message": "x"}}, "events is not a list"),
        ({"events": [{"timestamp": 1}]}, "an event has no message"),
        ({"events": ["[FAILED] Line Number 2 - x"]}, "an event has no message"),
        ({"events": [], "nextToken": 7}, "nextToken is not a token"),
        ({"events": [], "nextToken": "t" * 5000}, "nextToken is not a token"),
        ({"events": [{"message": "x"}] * 10_001}, "10001 events in one page"),
    ],
)
def test_an_answer_that_cannot_be_trusted_is_refused(answer: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidLogPage, match=message):
        parse_log_page(answer)


def test_events_of_another_stream_under_the_job_s_id_are_left_out() -> None:
    row = "[FAILED] Line Number 3 - Internal error."
    answer = {
        "events": [
            {"logStreamName": "import-AbC123/nightly", "message": row},
            {"logStreamName": "import-AbC123/nightly-2", "message": row},
            {"message": row},
        ]
    }
    assert parse_log_page(answer, "import-AbC123/nightly") == LogPage((row,), None)
    assert job_stream(JOB) == f"import-AbC123/{JOB.name}"


def test_a_huge_line_is_kept_short() -> None:
    page = parse_log_page({"events": [{"message": "[FAILED] " + "x" * 1_000_000}]})
    assert len(page.messages[0]) == 2_000


@pytest.fixture
def cognito() -> Any:
    return botocore.session.get_session().create_client(
        "cognito-idp",
        region_name="eu-west-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="not-a-secret",
    )


def describe_answer(name: object) -> dict[str, Any]:
    return {"UserPool": {"Id": "eu-west-1_Pool1", "Name": name}}


def test_the_log_group_is_named_after_the_pool_s_own_name(cognito: Any) -> None:
    with Stubber(cognito) as stubber:
        stubber.add_response(
            "describe_user_pool",
            describe_answer("real name"),
            expected_params={"UserPoolId": "eu-west-1_Pool1"},
        )
        assert pool_name(cognito, "eu-west-1_Pool1") == "real name"


@pytest.mark.parametrize("name", ["a/b", "x" * 129])
def test_a_pool_name_that_cannot_name_a_log_group_is_refused(cognito: Any, name: str) -> None:
    with Stubber(cognito) as stubber:
        stubber.add_response("describe_user_pool", describe_answer(name))
        with pytest.raises(PagingError, match="names no valid pool name"):
            pool_name(cognito, "eu-west-1_Pool1")
