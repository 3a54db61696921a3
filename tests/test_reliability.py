"""The exporter process under signals, reloads, hostile clients, and with secrets planted."""

from __future__ import annotations

import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from exporter.demo.service import SimulatedCognito
from tests.exporter_process import http_get, running_exporter, samples, value
from tests.simulated import populate
from tests.tools import wait_until

POOLS = ("eu-west-1_Rel1", "eu-west-1_Rel2")
PLANTED = {
    "secret_access_key": "PLANTED-SECRET-ACCESS-KEY-7f3a",
    "session_token": "PLANTED-SESSION-TOKEN-91bc",
    "external_id": "PLANTED-EXTERNAL-ID-c0de",
}


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=31)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 30, seed, active_newest=2)
    return model


def config_text(endpoint: str, pools: tuple[str, ...] = POOLS) -> str:
    pool_lines = "\n".join(f"  - id: {pool_id}" for pool_id in pools)
    return f"""
defaults: {{endpoint_url: {endpoint}, credentials: static}}
credentials:
  static:
    access_key_id: AKIAEXAMPLE
    secret_access_key: {PLANTED["secret_access_key"]}
    session_token: {PLANTED["session_token"]}
  role:
    role_arn: arn:aws:iam::123456789012:role/reader
    external_id: {PLANTED["external_id"]}
pools:
{pool_lines}
  - {{id: eu-west-1_Role9, credentials: role}}
"""


def post(url: str) -> int:
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_broken_config_on_sighup_keeps_the_old_one_and_post_reload_applies_a_good_one(
    tmp_path: Path, model: SimulatedCognito, endpoint: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(endpoint))
    with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
        assert (
            value(samples(exporter.scrape()), "cognito_user_import_config_last_reload_successful")
            == 1
        )
        config.write_text("pools: [{id: 'not a pool'}]\n")
        exporter.process.send_signal(signal.SIGHUP)

        def reload_failed() -> bool:
            parsed = samples(exporter.scrape())
            return value(parsed, "cognito_user_import_config_last_reload_successful") == 0

        wait_until(reload_failed, 10, "the reload refused")
        parsed = samples(exporter.scrape())
        for pool_id in POOLS:
            assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
        assert "configuration reload failed" in exporter.log()
        assert post(f"{exporter.base_url}/-/reload") == 500

        model.add_pool("eu-west-1_Rel3", "third", spawning=False)
        config.write_text(config_text(endpoint, (*POOLS, "eu-west-1_Rel3")))
        assert post(f"{exporter.base_url}/-/reload") == 200
        parsed = samples(exporter.scrape())
        assert value(parsed, "cognito_user_import_config_last_reload_successful") == 1
        assert (
            value(parsed, "cognito_user_import_scrape_success", user_pool_id="eu-west-1_Rel3") == 1
        )
        assert (
            value(parsed, "cognito_user_import_jobs", user_pool_id=POOLS[0], status="Succeeded")
            == model.counts(POOLS[0]).statuses["Succeeded"]
        )


def test_sigterm_stops_within_a_second(tmp_path: Path, endpoint: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(endpoint))
    with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
        exporter.scrape()
        started = time.monotonic()
        exporter.process.send_signal(signal.SIGTERM)
        code = exporter.process.wait(timeout=5)
        stopped_after = time.monotonic() - started
    assert code == 0
    assert stopped_after < 1.0


def test_sigterm_during_a_slow_collection_still_stops_within_a_second(
    tmp_path: Path, model: SimulatedCognito, endpoint: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(endpoint))
    with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
        model.faults.latency = 5.0
        outcomes: list[str] = []

        def scrape_until_cut_off() -> None:
            try:
                http_get(f"{exporter.base_url}/metrics")
                outcomes.append("answered")
            except OSError:
                outcomes.append("cut off")

        scrape = threading.Thread(target=scrape_until_cut_off)
        scrape.start()
        wait_until(lambda: model.calls["ListUserImportJobs"] >= 1, 10, "a call made")
        started = time.monotonic()
        exporter.process.send_signal(signal.SIGTERM)
        code = exporter.process.wait(timeout=10)
        stopped_after = time.monotonic() - started
        scrape.join(timeout=10)
    assert code == 0
    assert stopped_after < 1.0
    assert outcomes == ["cut off"]


def test_idle_and_slow_connections_do_not_delay_a_scrape(tmp_path: Path, endpoint: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_text(endpoint))
    with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
        port = int(exporter.base_url.rsplit(":", 1)[1])
        hostile = []
        for index in range(150):
            connection = socket.create_connection(("127.0.0.1", port), timeout=5)
            if index % 2:
                connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: ")
            hostile.append(connection)
        try:
            started = time.monotonic()
            body = exporter.scrape()
            answered_after = time.monotonic() - started
            health = http_get(f"{exporter.base_url}/-/healthy")
        finally:
            for connection in hostile:
                connection.close()
    assert "cognito_user_import_jobs" in body
    assert health == "Healthy\n"
    assert answered_after < 1.0


def test_no_planted_secret_appears_anywhere(
    tmp_path: Path, model: SimulatedCognito, endpoint: str
) -> None:
    presigned_urls = {str(job["PreSignedUrl"]) for pool in POOLS for job in model.jobs(pool)}
    assert presigned_urls
    config = tmp_path / "config.yaml"
    config.write_text(config_text(endpoint))
    outputs = []
    with running_exporter(
        "--config.file",
        str(config),
        "--log.level",
        "debug",
        "--log.format",
        "json",
        workdir=tmp_path,
    ) as exporter:
        model.faults.garbage_pools.add(POOLS[1])
        for path in ("/metrics", "/", "/sd", f"/probe?target={POOLS[0]}", "/metrics"):
            outputs.append(http_get(exporter.base_url + path))
        config.write_text(config_text(endpoint) + "\nbogus: {secret_access_key: x}\n")
        exporter.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "configuration reload failed" in exporter.log(), 10, "reload refused")
        exporter.process.terminate()
        exporter.process.wait(timeout=5)
        outputs.append(exporter.log())
    everything = "\n".join(outputs)
    assert "eu-west-1_Role9" in everything
    for name, secret in PLANTED.items():
        assert secret not in everything, name
    for url in presigned_urls:
        assert url not in everything
    assert "X-Amz-Signature" not in everything
    assert "PreSignedUrl" not in everything
