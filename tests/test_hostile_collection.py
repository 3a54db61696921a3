"""Collection against a hostile or unlucky service: tokens that cycle, answers that drip, dates
past the calendar, errors that echo secrets, attempts that fail before and after sending,
and unknown pools probed by the thousand."""

from __future__ import annotations

import io
import json
import ssl
import time

import pytest
import trustme

from exporter.demo.server import SimulatorServer
from exporter.demo.service import GarbageMode, SimulatedCognito
from exporter.logs import configure
from tests.exporter_process import samples, value
from tests.simulated import assert_exact, config_yaml, exporter_for, populate
from tests.tools import free_port
from tests.wsgi import call, timed_scrape

HEALTHY = "eu-west-1_Healthy1"
SECRET_TOKEN = "PLANTED-SESSION-TOKEN-5e1f"
SECRET_KEY = "PLANTED-SECRET-KEY-0b7c"
EXTERNAL_ID = "PLANTED-EXTERNAL-ID-77aa"


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=61)
    populate(model, HEALTHY, 25, 1, active_newest=2)
    return model


@pytest.fixture
def log_level() -> str:
    """Everything the exporter logs, debug included: no secret may reach any level."""
    return "debug"


def errors(
    parsed: dict[tuple[str, frozenset[tuple[str, str]]], float],
) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["user_pool_id"], dict(labels)["error_code"]): sample
        for (name, labels), sample in parsed.items()
        if name == "cognito_user_import_api_errors_total"
    }


def requests_made(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    return {
        dict(labels)["operation"]: sample
        for (name, labels), sample in parsed.items()
        if name == "cognito_user_import_api_requests_total"
    }


def test_cycling_discovery_tokens_end_as_a_pagination_loop_and_static_pools_report(
    model: SimulatedCognito, endpoint: str
) -> None:
    for index in range(3):
        model.add_pool(f"eu-west-1_Found{index}", f"found {index}", spawning=False)
    model.faults.cycling_pool_tokens = True
    runtime, app = exporter_for(
        config_yaml(
            endpoint,
            [HEALTHY],
            scrape={"timeout": "5s"},
            extra="discovery: [{region: eu-west-1, refresh_interval: 1h}]\n",
        ).replace("page_size: 60", "page_size: 60, region: eu-west-1")
    )
    parsed, took = timed_scrape(app)

    assert value(parsed, "cognito_user_import_discovery_success", region="eu-west-1") == 0
    assert errors(parsed)[("", "PaginationLoop")] == 1
    assert model.calls["ListUserPools"] == 3
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 1
    assert_exact(parsed, model, HEALTHY)
    assert took < 2
    runtime.close()


def test_static_pools_report_while_discovery_is_still_under_way(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.faults.slow_operations["ListUserPools"] = 6.0
    runtime, app = exporter_for(
        config_yaml(
            endpoint,
            [HEALTHY],
            scrape={"timeout": "2s"},
            extra="discovery: [{region: eu-west-1, refresh_interval: 1h}]\n",
        )
    )
    parsed, took = timed_scrape(app)
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 1
    assert_exact(parsed, model, HEALTHY)
    assert took < 2.3
    runtime.close()


@pytest.mark.slow
def test_answers_that_drip_are_cut_at_their_deadline_and_free_their_slot(
    model: SimulatedCognito, endpoint: str
) -> None:
    dripping = ("eu-west-1_Drip1", "eu-west-1_Drip2")
    for seed, pool_id in enumerate(dripping):
        populate(model, pool_id, 5, seed)
        model.faults.drip_pools[pool_id] = 0.05
    runtime, app = exporter_for(
        config_yaml(endpoint, [*dripping, HEALTHY], scrape={"timeout": "4s", "max_concurrency": 2})
    )
    for scrape in range(2):
        model.reset_calls()
        parsed, took = timed_scrape(app)
        assert took < 4, scrape
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 1
        assert_exact(parsed, model, HEALTHY)
        for pool_id in dripping:
            assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 0
            # one attempt, cut at 2 s (half the budget), not retried; one Timeout a scrape
            assert model.pool_call_counts()[pool_id] == 1
            assert errors(parsed)[(pool_id, "Timeout")] == scrape + 1
    runtime.close()


def test_error_codes_no_model_knows_share_one_series(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter_for(config_yaml(endpoint, [HEALTHY]))
    for index in range(3):
        model.faults.failing_pools[HEALTHY] = f"MadeUp{index}<b>Exception"
        call(app, "/metrics")
    model.faults.failing_pools[HEALTHY] = "ResourceNotFoundException"
    body = call(app, "/metrics")[2].decode()
    assert errors(samples(body)) == {(HEALTHY, "Other"): 3, (HEALTHY, "ResourceNotFound"): 1}
    assert "MadeUp" not in body
    runtime.close()


@pytest.mark.parametrize("mode", ["oversized", "overfull"])
def test_answers_past_what_the_service_sends_are_refused(
    model: SimulatedCognito, endpoint: str, mode: GarbageMode
) -> None:
    model.faults.garbage_pools.add(HEALTHY)
    model.faults.garbage_mode = mode
    runtime, app = exporter_for(config_yaml(endpoint, [HEALTHY]))
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 0
    assert errors(parsed) == {(HEALTHY, "InvalidResponse"): model.calls["ListUserImportJobs"]}
    assert model.calls["ListUserImportJobs"] == 1
    runtime.close()


def test_a_pre_signed_url_in_a_completion_message_loses_its_signing_parameters(
    model: SimulatedCognito, endpoint: str, log_stream: io.StringIO
) -> None:
    runtime, app = exporter_for(config_yaml(endpoint, [HEALTHY]))
    call(app, "/metrics")
    token, signature = "IQoJb3JpZ2luX2VjE%2FPLANTED%2Btoken%3D", "5f3e9a0c17PLANTEDSIG"
    message = (
        "Cannot read my-bucket.s3.eu-west-1.amazonaws.com/users.csv?X-Amz-Algorithm=AWS4-HMAC"
        f"&X-Amz-Security-Token={token}&X-Amz-Signature={signature} (scheme left out)"
    )
    model.add_job(
        HEALTHY, name="sync", status="Failed", created=time.time(), completion_message=message
    )
    call(app, "/metrics")
    page = call(app, "/")[2].decode()
    log = log_stream.getvalue()
    assert "job_status_changed" in log
    assert "X-Amz-Signature=<redacted>" in log
    for text_seen in (page, log):
        assert "PLANTED" not in text_seen
    runtime.close()


def test_a_date_past_the_calendar_leaves_the_status_page_whole(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.add_job(HEALTHY, name="from the far future", status="Created", created=1e20)
    runtime, app = exporter_for(config_yaml(endpoint, [HEALTHY]))
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 1
    status, _, page = call(app, "/")
    assert status == 200
    assert "from the far future" in page.decode()
    assert "100000000000000000000" in page.decode()
    assert f"<td>{HEALTHY}</td>" in page.decode()
    runtime.close()


def role_config(endpoint: str, external_id: str = "") -> str:
    """A config whose pool is read through an assumed role, with STS at the simulator."""
    extra = f", external_id: {external_id}" if external_id else ""
    role = f"role: {{role_arn: 'arn:aws:iam::123456789012:role/reader'{extra}}}"
    return (
        config_yaml(endpoint, [HEALTHY])
        .replace("credentials: test,", "credentials: role,")
        .replace("credentials:\n", f"credentials:\n  {role}\n", 1)
    )


@pytest.fixture
def sts_at_the_simulator(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASOURCEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "source-secret-not-real")


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_a_failed_assume_role_is_counted_as_sts_requests_and_the_pools_errors(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.faults.assume_role_error = "AccessDenied"
    runtime, app = exporter_for(role_config(endpoint))
    parsed = samples(call(app, "/metrics")[2].decode())
    assume_role_calls = model.calls["AssumeRole"]
    assert assume_role_calls >= 1
    assert requests_made(parsed) == {"AssumeRole": assume_role_calls}
    assert errors(parsed) == {(HEALTHY, "AccessDenied"): assume_role_calls}
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 0
    runtime.close()


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_an_assumed_role_counts_its_sts_request_beside_the_pools(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter_for(role_config(endpoint))
    parsed = samples(call(app, "/metrics")[2].decode())
    assert requests_made(parsed) == {"AssumeRole": 1, "ListUserImportJobs": 1}
    assert errors(parsed) == {}
    assert_exact(parsed, model, HEALTHY)
    runtime.close()


def test_connection_refused_counts_one_error_per_request(model: SimulatedCognito) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    runtime, app = exporter_for(config_yaml(closed, [HEALTHY]))
    parsed = samples(call(app, "/metrics")[2].decode())
    assert requests_made(parsed) == {"ListUserImportJobs": 5}
    assert errors(parsed) == {(HEALTHY, "ConnectionError"): 5}
    runtime.close()


def test_tls_verification_failures_count_one_error_per_request(model: SimulatedCognito) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with SimulatorServer(model, ssl_context=context) as server:
        runtime, app = exporter_for(config_yaml(server.url, [HEALTHY]))
        parsed = samples(call(app, "/metrics")[2].decode())
    assert requests_made(parsed) == {"ListUserImportJobs": 5}
    assert errors(parsed) == {(HEALTHY, "SSL"): 5}
    runtime.close()


def test_a_service_error_that_echoes_the_session_token_shows_it_nowhere(
    model: SimulatedCognito, endpoint: str, log_stream: io.StringIO
) -> None:
    model.faults.failing_pools[HEALTHY] = "InternalErrorException"
    model.faults.echo_credentials = True
    text = config_yaml(endpoint, [HEALTHY]).replace(
        "secret_access_key: test-secret-not-real,",
        f"secret_access_key: {SECRET_KEY}, session_token: {SECRET_TOKEN},",
    )
    runtime, app = exporter_for(text)
    parsed = samples(call(app, "/metrics")[2].decode())
    page = call(app, "/")[2].decode()
    log = log_stream.getvalue()
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=HEALTHY) == 0
    assert "Request signed with credential AKIAEXAMPLE" in page
    assert "&lt;redacted&gt;" in page
    for text_seen in (page, log):
        assert SECRET_TOKEN not in text_seen
        assert SECRET_KEY not in text_seen
    assert "<redacted>" in log
    runtime.close()


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_an_sts_error_that_echoes_the_external_id_shows_it_nowhere(
    model: SimulatedCognito, endpoint: str, log_stream: io.StringIO
) -> None:
    model.faults.assume_role_error = "AccessDenied"
    model.faults.echo_credentials = True
    runtime, app = exporter_for(role_config(endpoint, EXTERNAL_ID))
    call(app, "/metrics")
    page = call(app, "/")[2].decode()
    log = log_stream.getvalue()
    assert "sts:AssumeRole" in page
    assert "ExternalId &lt;redacted&gt;" in page
    assert EXTERNAL_ID not in page
    assert EXTERNAL_ID not in log
    runtime.close()


def test_probing_thousands_of_unknown_pools_adds_no_series(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter_for(
        config_yaml(
            endpoint,
            [HEALTHY],
            scrape={"requests_per_second": 1000},
            extra="probe: {allow_unlisted: true, credentials: test}\n",
        )
    )
    before = call(app, "/metrics")[2]
    for index in range(300):
        status, _, _ = call(app, "/probe", query=f"target=eu-west-1_Unknown{index}")
        assert status == 200
    after = call(app, "/metrics")[2]
    parsed = samples(after.decode())
    assert errors(parsed) == {("", "ResourceNotFound"): 300}
    assert len(after) - len(before) < 300
    runtime.close()


def test_probes_of_made_up_regions_are_refused_before_any_client_is_built(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter_for(
        config_yaml(endpoint, [HEALTHY], extra="probe: {allow_unlisted: true, credentials: test}\n")
    )
    model.reset_calls()
    for index in range(50):
        region = "zz-" + "".join(chr(ord("a") + int(digit)) for digit in str(index)) + "-1"
        status, _, body = call(app, "/probe", query=f"target={region}_Abc")
        assert (status, body) == (
            404,
            f"{region} is not a region Cognito user pools are in\n".encode(),
        )
    assert model.call_counts() == {}
    # a region the service has, not named in the file, is probed
    status, _, body = call(app, "/probe", query="target=ap-southeast-7_Abc")
    assert status == 200
    assert (
        'cognito_user_import_scrape_success{user_pool_id="ap-southeast-7_Abc"} 0.0' in body.decode()
    )
    runtime.close()


@pytest.mark.parametrize(
    "target",
    [
        "eu-west-1_Abc%0A",
        "eu-west-1_%C3%84bc",
        "eu-west-1_" + "a" * 46,
        "eu%E2%80%A8west-1_Abc",
    ],
    ids=["trailing newline", "non-ascii letter", "56 characters", "line separator"],
)
def test_probe_targets_follow_the_services_pool_id_pattern(
    model: SimulatedCognito, endpoint: str, target: str
) -> None:
    runtime, app = exporter_for(
        config_yaml(endpoint, [HEALTHY], extra="probe: {allow_unlisted: true, credentials: test}\n")
    )
    assert call(app, "/probe", query=f"target={target}")[0] == 400
    assert model.calls["ListUserImportJobs"] == 0
    runtime.close()


def test_every_log_format_escapes_control_characters(
    model: SimulatedCognito, endpoint: str
) -> None:
    forged = "nightly\r\nlevel=error msg=forged\x1b[2J\u2028\u0085done"
    model.add_job(HEALTHY, name=forged, status="Created", created=time.time())
    for fmt, next_status in (("logfmt", "Pending"), ("json", "InProgress")):
        stream = io.StringIO()
        configure("info", fmt, stream)
        runtime, app = exporter_for(config_yaml(endpoint, [HEALTHY]))
        call(app, "/metrics")
        model.set_job(HEALTHY, str(model.jobs(HEALTHY)[0]["JobId"]), status=next_status)
        call(app, "/metrics")
        runtime.close()
        output = stream.getvalue()
        [line] = [line for line in output.split("\n") if "job_status_changed" in line]
        assert len(line.splitlines()) == 1, fmt
        assert not any(char in line for char in "\r\x1b\u2028\u0085"), fmt
        if fmt == "json":
            assert json.loads(line)["job_name"] == forged
    configure("warn", "logfmt", io.StringIO())


def test_a_name_pattern_that_would_backtrack_cannot_hold_discovery(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.add_pool("eu-west-1_Trap1", "a" * 34 + "!", spawning=False)
    model.add_pool("eu-west-1_Match2", "aaaa", spawning=False)
    runtime, app = exporter_for(
        config_yaml(
            endpoint,
            [HEALTHY],
            scrape={"timeout": "5s"},
            extra="discovery: [{region: eu-west-1, name_pattern: '^(a+)+$', "
            "refresh_interval: 1h}]\n",
        )
    )
    parsed, took = timed_scrape(app)
    assert took < 2
    assert (
        value(parsed, "cognito_user_import_discovery_pools", region="eu-west-1", state="collected")
        == 1
    )
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id="eu-west-1_Match2") == 1
    assert ("cognito_user_import_pool_info", "eu-west-1_Trap1") not in {
        (name, dict(labels).get("user_pool_id")) for name, labels in parsed
    }
    runtime.close()
