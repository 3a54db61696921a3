"""The request budget of each account and region: read from the account's provisioned rate,
shared by every credential set of the account, and the default when it cannot be read; and
pools in a region where import jobs cannot be listed (a replica region)."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator

import pytest

from bench.limits_bench import busiest_window
from exporter.cognito.accounts import RESOURCE_READ
from exporter.collect import budgets
from exporter.collect.budgets import UNRESOLVED_RETRY_SECONDS
from exporter.config.load import load_text
from exporter.demo.service import SimulatedCognito
from tests.exporter_process import samples, value
from tests.simulated import (
    TEST_ACCOUNT,
    assert_exact,
    config_yaml,
    exporter_for,
    populate,
    serving,
)
from tests.wsgi import call

POOLS = tuple(f"eu-west-1_Budget{index}" for index in range(6))
QUOTA = "cognito_user_import_api_quota_requests_per_second"
BUDGET = "cognito_user_import_api_budget_requests_per_second"
SENT = "cognito_user_import_api_account_requests_total"
THROTTLED = "cognito_user_import_api_account_throttles_total"
# a call's deadline in the tests of it: long enough for a busy machine, shorter than the real one
CALL_SECONDS = 2.0


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=5)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 120, seed, active_newest=1)
    return model


def two_sets_of_one_account(endpoint: str, pools: tuple[str, ...], **scrape: object) -> str:
    """Pools split between two credential sets (two access keys) that reach one account; the
    accounts are told by GetCallerIdentity."""
    half = len(pools) // 2
    lines = "".join(f"  - {{id: {pool_id}, credentials: first}}\n" for pool_id in pools[:half])
    lines += "".join(f"  - {{id: {pool_id}, credentials: second}}\n" for pool_id in pools[half:])
    return (
        config_yaml(endpoint, scrape=scrape, page_size=60).replace(
            "credentials:\n",
            "credentials:\n"
            "  first: {access_key_id: AKIAFIRST, secret_access_key: first-not-real}\n"
            "  second: {access_key_id: AKIASECOND, secret_access_key: second-not-real}\n",
            1,
        )
        + "pools:\n"
        + lines
    )


@pytest.fixture
def sts_at_the_simulator(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_auto_spends_the_share_of_the_provisioned_rate_across_every_set_of_the_account(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.accounts = {"AKIAFIRST": "210987654321", "AKIASECOND": "210987654321"}
    model.provisioned_limits[("210987654321", "eu-west-1")] = 40
    runtime, app = exporter_for(
        two_sets_of_one_account(endpoint, POOLS, requests_per_second="auto", timeout="30s")
    )
    # each set's account told once, the account's rate read once for its region
    assert model.calls["GetCallerIdentity"] == 2
    assert model.calls["GetProvisionedLimit"] == 1
    model.reset_calls()
    parsed = samples(call(app, "/metrics")[2].decode())
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)
    assert (
        value(
            parsed,
            QUOTA,
            account_id="210987654321",
            region="eu-west-1",
            category="UserPoolResourceRead",
        )
        == 40
    )
    assert value(parsed, BUDGET, account_id="210987654321", region="eu-west-1") == 20
    # 6 pools of 3 pages: 18 calls, 20 at most in any second across both sets
    assert model.calls["ListUserImportJobs"] == 18
    assert busiest_window(model.list_call_times()) <= 20
    # what was sent against the account's quota, both sets together
    assert value(parsed, SENT, account_id="210987654321", region="eu-west-1") == 18
    runtime.close()


@pytest.mark.slow
@pytest.mark.usefixtures("sts_at_the_simulator")
def test_throttled_requests_are_counted_against_their_account(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.accounts = {"AKIAFIRST": "210987654321", "AKIASECOND": "210987654321"}
    model.faults.throttle_rate = 1.0
    runtime, app = exporter_for(
        two_sets_of_one_account(endpoint, POOLS[:2], requests_per_second=1000, timeout="20s")
    )
    parsed = samples(call(app, "/metrics")[2].decode())
    sent = value(parsed, SENT, account_id="210987654321", region="eu-west-1")
    throttled = value(parsed, THROTTLED, account_id="210987654321", region="eu-west-1")
    # every attempt throttled, retries included: each one sent and each one counted
    assert sent == model.calls["ListUserImportJobs"]
    assert throttled == sent
    assert sent >= 2
    runtime.close()


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_two_sets_of_one_account_share_a_fixed_rate(model: SimulatedCognito, endpoint: str) -> None:
    model.accounts = {"AKIAFIRST": "210987654321", "AKIASECOND": "210987654321"}
    runtime, app = exporter_for(
        two_sets_of_one_account(endpoint, POOLS, requests_per_second=6, timeout="30s")
    )
    assert "GetProvisionedLimit" not in model.calls
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id="210987654321", region="eu-west-1") == 6
    assert [name for name, _ in parsed if name == QUOTA] == []
    assert busiest_window(model.list_call_times()) <= 6
    runtime.close()


def test_a_denied_quota_read_falls_back_to_the_default_and_says_so_once(
    model: SimulatedCognito, endpoint: str, log_stream: io.StringIO
) -> None:
    model.faults.provisioned_limit_error = "NotAuthorizedException"
    runtime, app = exporter_for(
        config_yaml(endpoint, POOLS[:1], scrape={"requests_per_second": "auto"})
    )
    runtime.budgets.refresh()
    runtime.budgets.refresh()
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id=TEST_ACCOUNT, region="eu-west-1") == 10
    assert [name for name, _ in parsed if name == QUOTA] == []
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=POOLS[0]) == 1
    assert model.calls["GetProvisionedLimit"] == 3
    assert log_stream.getvalue().count("cannot read the account's provisioned rate") == 1
    runtime.close()


def test_a_refresh_that_fails_keeps_the_rate_last_read(
    model: SimulatedCognito, endpoint: str, log_stream: io.StringIO
) -> None:
    model.provisioned_limits[(TEST_ACCOUNT, "eu-west-1")] = 100
    runtime, app = exporter_for(
        config_yaml(endpoint, POOLS[:1], scrape={"requests_per_second": "auto"})
    )
    # not retried, unlike throttling: what a failed refresh keeps is the point, not how it failed
    model.faults.provisioned_limit_error = "NotAuthorizedException"
    runtime.budgets.refresh()
    parsed = samples(call(app, "/metrics")[2].decode())
    # quota and budget still agree: 100 read before, half of it spent
    assert value(parsed, BUDGET, account_id=TEST_ACCOUNT, region="eu-west-1") == 50
    assert (
        value(parsed, QUOTA, account_id=TEST_ACCOUNT, region="eu-west-1", category=RESOURCE_READ)
        == 100
    )
    assert "keeping the rate last read, 100 requests a second" in log_stream.getvalue()
    runtime.close()


@pytest.mark.parametrize("answered", [0.001, 0.5])
def test_a_provisioned_rate_below_one_a_second_is_not_believed(
    model: SimulatedCognito, endpoint: str, answered: float, log_stream: io.StringIO
) -> None:
    model.provisioned_limits[(TEST_ACCOUNT, "eu-west-1")] = answered
    runtime, app = exporter_for(
        config_yaml(endpoint, POOLS[:1], scrape={"requests_per_second": "auto"})
    )
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id=TEST_ACCOUNT, region="eu-west-1") == 10
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=POOLS[0]) == 1
    assert "assuming the default 20 requests a second" in log_stream.getvalue()
    runtime.close()


def test_a_refresh_follows_a_changed_provisioned_rate(
    model: SimulatedCognito, endpoint: str
) -> None:
    runtime, app = exporter_for(
        config_yaml(
            endpoint, POOLS[:1], scrape={"requests_per_second": "auto", "quota_share": 0.25}
        )
    )
    assert (
        value(
            samples(call(app, "/metrics")[2].decode()),
            BUDGET,
            account_id=TEST_ACCOUNT,
            region="eu-west-1",
        )
        == 5
    )
    model.provisioned_limits[(TEST_ACCOUNT, "eu-west-1")] = 100
    runtime.budgets.refresh()
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id=TEST_ACCOUNT, region="eu-west-1") == 25
    assert (
        value(
            parsed,
            QUOTA,
            account_id=TEST_ACCOUNT,
            region="eu-west-1",
            category="UserPoolResourceRead",
        )
        == 100
    )
    runtime.close()


def test_an_account_that_cannot_be_told_gets_a_budget_of_its_own(
    model: SimulatedCognito, endpoint: str, monkeypatch: pytest.MonkeyPatch, log_stream: io.StringIO
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")  # nothing listens
    runtime, app = exporter_for(two_sets_of_one_account(endpoint, POOLS[:2], requests_per_second=4))
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id="credentials:first", region="eu-west-1") == 4
    assert value(parsed, BUDGET, account_id="credentials:second", region="eu-west-1") == 4
    for pool_id in POOLS[:2]:
        assert_exact(parsed, model, pool_id)
    assert log_stream.getvalue().count("cannot tell which account the credentials reach") == 2
    runtime.close()


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_sets_whose_account_comes_to_be_told_join_its_budget_at_the_next_refresh(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.accounts = {"AKIAFIRST": "210987654321", "AKIASECOND": "210987654321"}
    model.faults.caller_identity_error = "InternalError"
    runtime, app = exporter_for(two_sets_of_one_account(endpoint, POOLS, requests_per_second=6))
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id="credentials:first", region="eu-west-1") == 6
    # not resolved: asked again within a minute, not an hour
    assert runtime.budgets.next_refresh_in() == UNRESOLVED_RETRY_SECONDS
    model.faults.caller_identity_error = None
    runtime.budgets.refresh()
    parsed = samples(call(app, "/metrics")[2].decode())
    budgets = {
        dict(labels)["account_id"]: sample
        for (name, labels), sample in parsed.items()
        if name == BUDGET
    }
    assert budgets == {"210987654321": 6}
    assert runtime.budgets.next_refresh_in() == 3600
    runtime.close()


@pytest.fixture
def silent_sts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An STS endpoint that takes connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{listener.getsockname()[1]}")
    yield
    listener.close()


@pytest.mark.usefixtures("silent_sts")
def test_a_silent_sts_costs_one_call_deadline_at_start_however_many_sets(
    model: SimulatedCognito, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budgets, "CALL_SECONDS", CALL_SECONDS)
    sets = 4
    lines = "".join(
        f"  set{index}: {{access_key_id: AKIASET{index}, secret_access_key: not-real}}\n"
        for index in range(sets)
    )
    pools = "".join(
        f"  - {{id: {pool_id}, credentials: set{index % sets}}}\n"
        for index, pool_id in enumerate(POOLS[:sets])
    )
    text = (
        config_yaml(endpoint, scrape={"requests_per_second": 50}).replace(
            "credentials:\n", "credentials:\n" + lines, 1
        )
        + "pools:\n"
        + pools
    )
    started = time.monotonic()
    runtime, app = exporter_for(text)
    took = time.monotonic() - started
    # one after another they took CALL_SECONDS each; together, about one
    assert took < 2 * CALL_SECONDS, took
    parsed = samples(call(app, "/metrics")[2].decode())
    for pool_id in POOLS[:sets]:
        assert_exact(parsed, model, pool_id)
    runtime.close()


def test_a_role_names_its_account(
    model: SimulatedCognito, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASOURCEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "source-secret-not-real")
    text = (
        config_yaml(endpoint, POOLS[:1], scrape={"requests_per_second": 10})
        .replace("credentials: test,", "credentials: role,")
        .replace(
            "credentials:\n",
            "credentials:\n  role: {role_arn: 'arn:aws:iam::444455556666:role/reader'}\n",
            1,
        )
    )
    runtime, app = exporter_for(text)
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, BUDGET, account_id="444455556666", region="eu-west-1") == 10
    assert "GetCallerIdentity" not in model.calls
    runtime.close()


# --- replica regions --------------------------------------------------------------------


def test_a_static_pool_in_a_replica_region_names_its_primary_region(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.add_pool("eu-west-1_Multi1", "multi", spawning=False, replica_regions=("eu-central-1",))
    runtime, app = exporter_for(
        config_yaml(endpoint, POOLS[:1]) + "  - {id: eu-west-1_Multi1, region: eu-central-1}\n"
    )
    parsed = samples(call(app, "/metrics")[2].decode())
    page = call(app, "/")[2].decode()
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id="eu-west-1_Multi1") == 0
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=POOLS[0]) == 1
    assert (
        value(
            parsed,
            "cognito_user_import_api_errors_total",
            user_pool_id="eu-west-1_Multi1",
            error_code="OperationNotEnabled",
        )
        == 1
    )
    assert (
        "OperationNotEnabled: import jobs cannot be listed in eu-central-1, a replica region of "
        "the pool; its primary region is eu-west-1" in page
    )
    runtime.close()


def test_a_discovered_pool_in_a_replica_region_is_dropped_and_counted(
    endpoint: str, log_stream: io.StringIO
) -> None:
    model = SimulatedCognito(seed=3)
    populate(model, "eu-central-1_Local1", 10, 1)
    model.add_pool("eu-west-1_Multi1", "multi", spawning=False, replica_regions=("eu-central-1",))
    with serving(model) as url:
        runtime, app = exporter_for(
            config_yaml(url, region="eu-central-1", extra="discovery: [{region: eu-central-1}]\n")
        )
        call(app, "/metrics")
        model.reset_calls()
        parsed = samples(call(app, "/metrics")[2].decode())
        pools = "cognito_user_import_discovery_pools"
        assert value(parsed, pools, region="eu-central-1", state="collected") == 1
        assert value(parsed, pools, region="eu-central-1", state="not_enabled") == 1
        assert_exact(parsed, model, "eu-central-1_Local1")
        assert (
            "cognito_user_import_scrape_success",
            frozenset({("user_pool_id", "eu-west-1_Multi1")}),
        ) not in parsed
        assert model.pool_call_counts() == {"eu-central-1_Local1": 1}
        # one line for the pool: that it is no longer collected, not that it failed
        multi = [line for line in log_stream.getvalue().splitlines() if "eu-west-1_Multi1" in line]
        assert len(multi) == 1
        assert "no longer collected" in multi[0]
        runtime.close()


@pytest.mark.usefixtures("sts_at_the_simulator")
def test_reloads_read_the_quota_only_of_accounts_and_regions_never_read(
    model: SimulatedCognito, endpoint: str
) -> None:
    model.accounts = {"AKIAFIRST": "210987654321", "AKIASECOND": "210987654321"}
    model.provisioned_limits[("210987654321", "eu-west-1")] = 40
    model.provisioned_limits[("210987654321", "eu-central-1")] = 30
    text = two_sets_of_one_account(
        endpoint, POOLS, requests_per_second="auto", timeout="30s", quota_share=0.5
    )
    runtime, app = exporter_for(text)
    assert model.calls["GetProvisionedLimit"] == 1
    for _ in range(20):
        runtime.apply(load_text(text))
    assert model.calls["GetProvisionedLimit"] == 1
    assert model.calls["GetCallerIdentity"] == 2
    # a new region is read once; a new share is applied to the rate already read
    wider = text.replace("quota_share: 0.5", "quota_share: 0.25") + (
        "  - {id: eu-central-1_Budget9, credentials: first}\n"
    )
    runtime.apply(load_text(wider))
    assert model.calls["GetProvisionedLimit"] == 2
    parsed = samples(call(app, "/exporter-metrics")[2].decode())
    assert value(parsed, BUDGET, account_id="210987654321", region="eu-west-1") == 10
    assert value(parsed, BUDGET, account_id="210987654321", region="eu-central-1") == 7.5
    runtime.close()
