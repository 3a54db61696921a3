"""The simulator's wire format and server, over real HTTP through real botocore."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError
from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

from exporter.demo.lifecycle import FAILED_MESSAGE
from exporter.demo.server import SimulatorServer
from exporter.demo.service import GarbageMode, SimulatedCognito
from tests.simulator_cases import LIFECYCLE, OTHER_POOL, POOL, START, FakeClock, add_history
from tests.tools import wait_until

ROLE_ARN = "arn:aws:iam::123456789012:role/CognitoImportLogs"
TARGET = "AWSCognitoIdentityProviderService."


SESSION = boto3.session.Session()
Job = Mapping[str, object]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model(clock: FakeClock) -> SimulatedCognito:
    cognito = SimulatedCognito(clock, seed=7, lifecycle=LIFECYCLE)
    cognito.add_pool(POOL, "customers", {"team": "identity", "env": "prod"})
    cognito.add_pool(OTHER_POOL, "partners", spawning=False)
    return cognito


@pytest.fixture
def server(model: SimulatedCognito) -> Iterator[SimulatorServer]:
    with SimulatorServer(model) as running:
        yield running


@pytest.fixture
def client(server: SimulatorServer) -> CognitoIdentityProviderClient:
    return client_for(server.url)


def client_for(url: str) -> CognitoIdentityProviderClient:
    return SESSION.client(
        "cognito-idp",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False),
    )


def list_pages(
    client: CognitoIdentityProviderClient, pool_id: str, max_results: int
) -> tuple[list[list[str]], list[str]]:
    pages: list[list[str]] = []
    tokens: list[str] = []
    response = client.list_user_import_jobs(UserPoolId=pool_id, MaxResults=max_results)
    while True:
        pages.append([job["JobId"] for job in response["UserImportJobs"]])
        token = response.get("PaginationToken")
        if token is None:
            return pages, tokens
        tokens.append(token)
        response = client.list_user_import_jobs(
            UserPoolId=pool_id, MaxResults=max_results, PaginationToken=token
        )


def all_jobs(client: CognitoIdentityProviderClient) -> list[Job]:
    jobs: list[Job] = []
    response = client.list_user_import_jobs(UserPoolId=POOL, MaxResults=60)
    jobs += response["UserImportJobs"]
    while "PaginationToken" in response:
        response = client.list_user_import_jobs(
            UserPoolId=POOL, MaxResults=60, PaginationToken=response["PaginationToken"]
        )
        jobs += response["UserImportJobs"]
    return jobs


def wire_form(job: Mapping[str, object]) -> dict[str, object]:
    return {key: v.timestamp() if isinstance(v, datetime) else v for key, v in job.items()}


def error_of(call: Callable[[], object]) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def raw_post(url: str, operation: str, body: bytes) -> tuple[int, str, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        headers = {
            "X-Amz-Target": TARGET + operation,
            "Content-Type": "application/x-amz-json-1.1",
        }
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


# ----- paging -----


@pytest.mark.parametrize(("max_results", "page_count"), [(7, 19)])
def test_paging_through_botocore_returns_every_job_once_newest_first(
    model: SimulatedCognito,
    client: CognitoIdentityProviderClient,
    max_results: int,
    page_count: int,
) -> None:
    newest_first = add_history(model, POOL, 130)

    pages, tokens = list_pages(client, POOL, max_results)

    assert [job_id for page in pages for job_id in page] == newest_first
    assert len(pages) == page_count
    assert [len(page) for page in pages[:-1]] == [max_results] * (page_count - 1)
    assert len(pages[-1]) == 130 - max_results * (page_count - 1)
    assert len(tokens) == page_count - 1
    assert len(set(tokens)) == page_count - 1
    assert not any(POOL in token or token.isdigit() for token in tokens)
    assert not any(job_id in token for token in tokens for job_id in newest_first)
    assert model.calls["ListUserImportJobs"] == page_count


def test_listed_jobs_match_the_model_field_by_field(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    model.add_job(POOL, name="fresh", status="Created", created=START - 30)
    model.add_job(
        POOL,
        name="running",
        status="InProgress",
        created=START - 20,
        started=START - 15,
        imported=7,
    )
    model.add_job(
        POOL,
        name="broken",
        status="Failed",
        created=START - 10,
        started=START - 9,
        completed=START - 5,
        imported=3,
        skipped=1,
        failed=40,
        completion_message=FAILED_MESSAGE,
    )

    listed = client.list_user_import_jobs(UserPoolId=POOL, MaxResults=10)["UserImportJobs"]

    assert [wire_form(job) for job in listed] == model.jobs(POOL)
    assert [job["JobName"] for job in listed] == ["broken", "running", "fresh"]
    assert set(wire_form(listed[2])) == {
        "JobName",
        "JobId",
        "UserPoolId",
        "PreSignedUrl",
        "CreationDate",
        "Status",
        "CloudWatchLogsRoleArn",
        "ImportedUsers",
        "SkippedUsers",
        "FailedUsers",
    }
    assert wire_form(listed[0])["CompletionDate"] == START - 5
    assert wire_form(listed[1])["StartDate"] == START - 15
    assert all("X-Amz-Signature=" in str(job["PreSignedUrl"]) for job in listed)


def test_timestamps_travel_as_epoch_numbers(
    model: SimulatedCognito, server: SimulatorServer
) -> None:
    model.add_job(POOL, name="stamped", status="Created", created=START - 0.25)

    status, content_type, body = raw_post(
        server.url, "ListUserImportJobs", json.dumps({"UserPoolId": POOL, "MaxResults": 1}).encode()
    )

    job = json.loads(body)["UserImportJobs"][0]
    assert (status, content_type) == (200, "application/x-amz-json-1.1")
    assert job["CreationDate"] == START - 0.25
    assert type(job["CreationDate"]) is float


# ----- validation -----


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"UserPoolId": POOL, "MaxResults": 0}, "InvalidParameterException"),
        ({"UserPoolId": POOL, "MaxResults": 61}, "InvalidParameterException"),
        ({"UserPoolId": POOL}, "InvalidParameterException"),
        ({"UserPoolId": "no-underscore", "MaxResults": 5}, "InvalidParameterException"),
        ({"UserPoolId": "eu-west-1_" + "a" * 46, "MaxResults": 5}, "InvalidParameterException"),
        ({"UserPoolId": "eu-west-1_Missing1", "MaxResults": 5}, "ResourceNotFoundException"),
        (
            {"UserPoolId": POOL, "MaxResults": 5, "PaginationToken": "not-a-token"},
            "InvalidParameterException",
        ),
        ({"UserPoolId": POOL, "MaxResults": "five"}, "SerializationException"),
    ],
)
def test_list_validation_errors(
    client: CognitoIdentityProviderClient, params: dict[str, Any], code: str
) -> None:
    assert error_of(partial(client.list_user_import_jobs, **params)) == (code, 400)


def test_tampered_or_foreign_tokens_are_invalid(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    add_history(model, POOL, 5)
    add_history(model, OTHER_POOL, 5)
    token = client.list_user_import_jobs(UserPoolId=POOL, MaxResults=2)["PaginationToken"]
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")

    listings = [
        partial(client.list_user_import_jobs, UserPoolId=pool_id, MaxResults=2, PaginationToken=bad)
        for pool_id, bad in [(POOL, tampered), (OTHER_POOL, token), (POOL, token + "x")]
    ]

    assert [error_of(listing) for listing in listings] == [("InvalidParameterException", 400)] * 3


def test_unknown_operation_and_non_json_body(server: SimulatorServer) -> None:
    unknown = raw_post(server.url, "ListEverything", b"{}")
    not_json = raw_post(server.url, "ListUserImportJobs", b"{not json")

    assert (unknown[0], json.loads(unknown[2])["__type"]) == (400, "UnknownOperationException")
    assert (not_json[0], json.loads(not_json[2])["__type"]) == (400, "SerializationException")


# ----- lifecycle -----


# ----- the other operations -----


def test_list_user_pools_pages_in_creation_order(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    for n in range(3):
        model.add_pool(f"eu-west-1_Extra{n}", f"extra-{n}")
    pages: list[list[str]] = []
    response = client.list_user_pools(MaxResults=2)
    while True:
        pages.append([pool["Id"] for pool in response["UserPools"]])
        if "NextToken" not in response:
            break
        response = client.list_user_pools(MaxResults=2, NextToken=response["NextToken"])

    assert pages == [
        [POOL, OTHER_POOL],
        ["eu-west-1_Extra0", "eu-west-1_Extra1"],
        ["eu-west-1_Extra2"],
    ]
    assert response["UserPools"][0]["Status"] == "Enabled"
    assert error_of(lambda: client.list_user_pools(MaxResults=0)) == (
        "InvalidParameterException",
        400,
    )
    assert error_of(lambda: client.list_user_pools(MaxResults=2, NextToken="nope")) == (
        "InvalidParameterException",
        400,
    )


def test_describe_user_pool_returns_name_arn_and_tags(
    client: CognitoIdentityProviderClient,
) -> None:
    pool = client.describe_user_pool(UserPoolId=POOL)["UserPool"]

    assert (pool["Id"], pool["Name"]) == (POOL, "customers")
    assert pool["Arn"] == f"arn:aws:cognito-idp:eu-west-1:123456789012:userpool/{POOL}"
    assert pool["UserPoolTags"] == {"team": "identity", "env": "prod"}
    assert pool["CreationDate"].timestamp() == START
    assert error_of(lambda: client.describe_user_pool(UserPoolId="eu-west-1_Nope")) == (
        "ResourceNotFoundException",
        400,
    )


# ----- faults -----


def test_latency_delays_every_call_and_concurrent_calls_overlap(
    model: SimulatedCognito, server: SimulatorServer, client: CognitoIdentityProviderClient
) -> None:
    client.describe_user_pool(UserPoolId=POOL)
    model.faults.latency = 0.2
    began = time.monotonic()
    client.describe_user_pool(UserPoolId=POOL)
    single = time.monotonic() - began

    clients = [client_for(server.url) for _ in range(5)]
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=5) as pool:
        list(pool.map(lambda c: c.describe_user_pool(UserPoolId=POOL), clients))
    five_at_once = time.monotonic() - began

    assert single >= 0.2
    assert 0.2 <= five_at_once < 0.6


def test_a_slow_pool_delays_only_its_own_calls(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    model.faults.slow_pools[POOL] = 0.3

    def seconds_for(pool_id: str) -> float:
        began = time.monotonic()
        client.list_user_import_jobs(UserPoolId=pool_id, MaxResults=1)
        return time.monotonic() - began

    assert seconds_for(POOL) >= 0.3
    assert seconds_for(OTHER_POOL) < 0.3


def test_throttling_answers_the_configured_fraction(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    model.faults.throttle_rate = 0.25
    outcomes: list[str] = []
    for _ in range(400):
        try:
            client.list_user_import_jobs(UserPoolId=POOL, MaxResults=1)
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])
    model.faults.throttle_rate = 1.0
    always = error_of(lambda: client.list_user_import_jobs(UserPoolId=POOL, MaxResults=1))

    assert set(outcomes) == {"ok", "TooManyRequestsException"}
    assert 70 <= outcomes.count("TooManyRequestsException") <= 130
    assert model.calls["ListUserImportJobs"] == 401
    assert always == ("TooManyRequestsException", 400)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("NotAuthorizedException", 400),
        ("OperationNotEnabledException", 400),
        ("InternalErrorException", 500),
    ],
)
def test_a_failing_pool_answers_its_error_while_others_answer(
    model: SimulatedCognito, client: CognitoIdentityProviderClient, code: str, status: int
) -> None:
    add_history(model, OTHER_POOL, 3)
    model.faults.failing_pools[POOL] = code

    failing = error_of(lambda: client.list_user_import_jobs(UserPoolId=POOL, MaxResults=5))
    healthy = client.list_user_import_jobs(UserPoolId=OTHER_POOL, MaxResults=5)

    assert failing == (code, status)
    assert len(healthy["UserImportJobs"]) == 3


@pytest.mark.parametrize("mode", ["text", "empty", "truncated"])
def test_a_garbage_body_reaches_botocore_as_an_empty_answer(
    model: SimulatedCognito,
    server: SimulatorServer,
    client: CognitoIdentityProviderClient,
    mode: GarbageMode,
) -> None:
    add_history(model, POOL, 3)
    model.faults.garbage_pools.add(POOL)
    model.faults.garbage_mode = mode

    status, _, body = raw_post(
        server.url, "ListUserImportJobs", json.dumps({"UserPoolId": POOL, "MaxResults": 5}).encode()
    )
    answer = client.list_user_import_jobs(UserPoolId=POOL, MaxResults=5)

    assert status == 200
    with pytest.raises(ValueError):  # noqa: PT011 - json's own error type
        json.loads(body)
    assert set(answer) == {"ResponseMetadata"}
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_a_wrong_shape_body_makes_botocore_raise_a_plain_error(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    model.faults.garbage_pools.add(POOL)
    model.faults.garbage_mode = "wrong_shape"

    with pytest.raises(AttributeError):
        client.list_user_import_jobs(UserPoolId=POOL, MaxResults=5)
    assert len(client.list_user_import_jobs(UserPoolId=OTHER_POOL, MaxResults=5)) == 2


def test_a_repeating_token_never_ends_the_listing(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    newest_first = add_history(model, POOL, 10)
    model.faults.garbage_pools.add(POOL)
    model.faults.garbage_mode = "repeat_token"

    response = client.list_user_import_jobs(UserPoolId=POOL, MaxResults=2)
    pages = [[job["JobId"] for job in response["UserImportJobs"]]]
    tokens = [response["PaginationToken"]]
    for _ in range(4):
        response = client.list_user_import_jobs(
            UserPoolId=POOL, MaxResults=2, PaginationToken=tokens[-1]
        )
        pages.append([job["JobId"] for job in response["UserImportJobs"]])
        tokens.append(response["PaginationToken"])

    assert pages == [newest_first[:2]] * 5
    assert len(set(tokens)) == 1


def test_clearing_faults_restores_normal_answers(
    model: SimulatedCognito, client: CognitoIdentityProviderClient
) -> None:
    model.faults.throttle_rate = 1.0
    model.faults.failing_pools[POOL] = "InternalErrorException"
    model.faults.garbage_pools.add(OTHER_POOL)
    model.faults.clear()

    assert client.list_user_import_jobs(UserPoolId=POOL, MaxResults=1)["UserImportJobs"] == []
    assert client.list_user_import_jobs(UserPoolId=OTHER_POOL, MaxResults=1)["UserImportJobs"] == []


# ----- accounting and the server -----


def test_calls_are_counted_per_operation_and_pool_with_their_times(
    model: SimulatedCognito, client: CognitoIdentityProviderClient, clock: FakeClock
) -> None:
    for n in range(3):
        clock.set(START + n)
        client.list_user_import_jobs(UserPoolId=POOL, MaxResults=1)
    client.list_user_import_jobs(UserPoolId=OTHER_POOL, MaxResults=1)
    client.describe_user_pool(UserPoolId=POOL)

    counts = model.call_counts()
    by_pool = model.pool_call_counts()
    times = model.list_call_times()
    model.reset_calls()

    assert counts == {"ListUserImportJobs": 4, "DescribeUserPool": 1}
    assert by_pool == {POOL: 3, OTHER_POOL: 1}
    assert times == [START, START + 1, START + 2, START + 2]
    assert (model.call_counts(), model.pool_call_counts(), model.list_call_times()) == ({}, {}, [])


def test_a_stopped_server_refuses_connections(
    server: SimulatorServer, client: CognitoIdentityProviderClient
) -> None:
    client.describe_user_pool(UserPoolId=POOL)
    server.stop()

    with pytest.raises(EndpointConnectionError):
        client.describe_user_pool(UserPoolId=POOL)


def test_describing_a_job_checks_its_id(client: CognitoIdentityProviderClient) -> None:
    describe = client.describe_user_import_job
    unknown_job = partial(describe, UserPoolId=POOL, JobId="import-DoesNotExist")
    bad_job_id = partial(describe, UserPoolId=POOL, JobId="job-1")
    assert error_of(unknown_job) == ("ResourceNotFoundException", 400)
    assert error_of(bad_job_id) == ("InvalidParameterException", 400)


def test_assume_role_answers_credentials_or_the_configured_error(
    model: SimulatedCognito, server: SimulatorServer
) -> None:
    sts = SESSION.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"total_max_attempts": 1}),
    )
    assumed = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="exporter")
    model.faults.assume_role_error = "AccessDenied"
    with pytest.raises(ClientError) as denied:
        sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="exporter")
    assert assumed["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert len(assumed["Credentials"]["SecretAccessKey"]) == 40
    assert assumed["AssumedRoleUser"]["Arn"] == f"{ROLE_ARN}/exporter"
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert model.call_counts() == {"AssumeRole": 2}


def test_the_background_ticker_advances_without_requests(
    model: SimulatedCognito, clock: FakeClock
) -> None:
    model.add_job(POOL, name="nightly", status="Created", created=clock(), live=True)
    clock.set(START + 120)
    with SimulatorServer(model, tick_interval=0.01):
        wait_until(lambda: model.jobs(POOL)[0]["Status"] == "Expired", 5, "the job expired")
    assert model.call_counts() == {}
