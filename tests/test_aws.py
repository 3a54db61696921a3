from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import psutil
import pytest
from botocore.credentials import AssumeRoleCredentialFetcher
from botocore.exceptions import ClientError

from exporter.cognito.answers import epoch_seconds
from exporter.cognito.clients import (
    ClientFactory,
    ClientKey,
    ClientSettings,
)
from exporter.cognito.errors import error_code
from exporter.collect.ratelimit import DeadlineExceeded
from exporter.config.load import load_text
from exporter.config.schema import CredentialSet


def test_timestamps_stay_epoch_seconds() -> None:
    assert epoch_seconds(1700000000) == 1700000000.0
    assert epoch_seconds("1700000000.5") == 1700000000.5
    assert epoch_seconds("2023-11-14T22:13:20Z") == 1700000000.0
    with pytest.raises(ValueError, match="neither a number"):
        epoch_seconds(True)


def test_one_client_per_credentials_region_and_endpoint() -> None:
    factory = ClientFactory({"default": CredentialSet()}, ClientSettings())
    first = factory.client(ClientKey("default", "eu-west-1", None))
    assert factory.client(ClientKey("default", "eu-west-1", None)) is first
    assert factory.client(ClientKey("default", "us-east-1", None)) is not first
    assert factory.client(ClientKey("default", "eu-west-1", "http://127.0.0.1:1")) is not first


def test_client_config_sizes_the_pool_and_sets_retries_and_timeouts() -> None:
    factory = ClientFactory(
        {"default": CredentialSet()}, ClientSettings(max_pool_connections=32, read_timeout=7.0)
    )
    config: Any = factory.client(ClientKey("default", "eu-west-1", None)).meta.config
    assert config.max_pool_connections == 32
    assert config.read_timeout == 7.0
    assert config.retries == {"mode": "standard", "total_max_attempts": 5}


def test_reload_keeps_clients_of_unchanged_credential_sets() -> None:
    before = load_text(
        "credentials: {a: {access_key_id: A, secret_access_key: s},"
        " b: {role_arn: 'arn:aws:iam::123456789012:role/x'}}"
    )
    after = load_text(
        "credentials: {a: {access_key_id: A, secret_access_key: s},"
        " b: {role_arn: 'arn:aws:iam::123456789012:role/y'}}"
    )
    old = ClientFactory(before.credentials, ClientSettings())
    kept = old.client(ClientKey("a", "eu-west-1", None))
    changed = old.client(ClientKey("b", "eu-west-1", None))
    new = ClientFactory(after.credentials, ClientSettings())
    new.keep_clients_from(old)
    assert new.client(ClientKey("a", "eu-west-1", None)) is kept
    assert new.client(ClientKey("b", "eu-west-1", None)) is not changed


def test_assumed_role_credentials_refresh_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    issued = iter(range(1, 100))

    def fake_init(
        self: Any,
        client_creator: Any,
        source_credentials: Any,
        role_arn: str,
        extra_args: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        calls.append({"role_arn": role_arn, **(extra_args or {})})

    def fake_fetch(self: Any) -> dict[str, Any]:
        number = next(issued)
        # expiring within botocore's mandatory refresh window: every use refreshes
        return {
            "access_key": f"ASIA{number}",
            "secret_key": "temporary-secret",
            "token": "temporary-token",
            "expiry_time": (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat(),
        }

    monkeypatch.setattr(AssumeRoleCredentialFetcher, "__init__", fake_init)
    monkeypatch.setattr(AssumeRoleCredentialFetcher, "fetch_credentials", fake_fetch)
    config = load_text(
        """
        credentials:
          prod:
            role_arn: arn:aws:iam::123456789012:role/reader
            external_id: planted-external-id
            role_session_name: exporter
            duration: 1h
        """
    )
    client: Any = ClientFactory(config.credentials, ClientSettings()).client(
        ClientKey("prod", "eu-west-1", None)
    )
    credentials = client._request_signer._credentials
    assert credentials.method == "assume-role"
    first = credentials.get_frozen_credentials().access_key
    second = credentials.get_frozen_credentials().access_key
    assert (first, second) == ("ASIA1", "ASIA2")
    assert calls == [
        {
            "role_arn": "arn:aws:iam::123456789012:role/reader",
            "RoleSessionName": "exporter",
            "ExternalId": "planted-external-id",
            "DurationSeconds": 3600,
        }
    ]


def test_error_codes_are_short_and_bounded() -> None:
    assert error_code(DeadlineExceeded("late")) == "Timeout"
    assert error_code(ValueError("x")) == "Value"


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ("ResourceNotFoundException", "ResourceNotFound"),
        ("com.amazonaws.cognito#TooManyRequestsException", "TooManyRequests"),
        ("OperationNotEnabledException", "OperationNotEnabled"),
        ("ExpiredToken", "ExpiredToken"),
        ("ThrottlingException", "Throttling"),
        ("503", "HTTP503"),
        ("", "Unknown"),
        ("12345", "Other"),
        ("NoSuchThingException", "Other"),
        ("Bad\nLine", "Other"),
        ("A" * 500, "Other"),
    ],
)
def test_service_error_codes_come_from_a_closed_set(sent: str, named: str) -> None:
    error = ClientError({"Error": {"Code": sent, "Message": "m"}}, "ListUserImportJobs")
    assert error_code(error) == named


def test_credential_sets_share_what_botocore_reads_of_the_service() -> None:
    """Each credential set has a session of its own; the service model and endpoint rules
    they read are loaded once (at 11 MB a set they once made a 20-set config 230 MB)."""
    process = psutil.Process()
    sets = {f"set{index}": CredentialSet() for index in range(20)}
    factory = ClientFactory(sets, ClientSettings())
    factory.client(ClientKey("set0", "eu-west-1", None))
    before = process.memory_info().rss
    for name in sets:
        factory.client(ClientKey(name, "eu-west-1", None))
    grown = process.memory_info().rss - before
    assert grown < 40 * 1024 * 1024, grown
