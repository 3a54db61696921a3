"""The server under hostile and unlucky clients: more scrapes than workers, a flood of wrong
passwords, timing probes for user names, and debug logs that must not carry a credential."""

from __future__ import annotations

import asyncio
import base64
import ssl
import statistics
import threading
import time
from pathlib import Path

import bcrypt
import pytest
import requests
import trustme

from exporter.demo.service import SimulatedCognito
from exporter.web.auth import BasicAuth, SuccessCache, Verdict
from tests.exporter_process import basic_auth_header, http_get, running_exporter
from tests.simulated import config_yaml, populate
from tests.tools import h2_get

POOLS = ("eu-west-1_Http1", "eu-west-1_Http2")
PASSWORD = "PLANTED-PASSWORD-correct-horse"


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=71)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 25, seed, active_newest=2)
    return model


def test_no_answer_is_later_than_the_scrape_timeout_however_many_scrapes_queue(
    tmp_path: Path, model: SimulatedCognito, endpoint: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(endpoint, POOLS, page_size=10))
    with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
        model.faults.latency = 0.5
        answers: list[tuple[float, int]] = []
        lock = threading.Lock()

        def scrape() -> None:
            started = time.monotonic()
            response = requests.get(
                f"{exporter.base_url}/metrics",
                headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"},
                timeout=30,
            )
            with lock:
                answers.append((time.monotonic() - started, response.status_code))

        threads = [threading.Thread(target=scrape) for _ in range(40)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(answers) == 40
    assert max(took for took, _ in answers) < 3.0
    # three pages at 0.5 s: one collection serves every scrape, the queued ones included
    assert [status for _, status in answers] == [200] * 40
    assert model.calls["ListUserImportJobs"] == 2 * 3


def web_config_with_users(tmp_path: Path, users: dict[str, str]) -> Path:
    web = tmp_path / "web.yml"
    lines = "".join(f"  {user}: {hashed}\n" for user, hashed in users.items())
    web.write_text(f"basic_auth_users:\n{lines}")
    return web


@pytest.mark.slow
def test_a_flood_of_wrong_passwords_never_delays_an_honest_client(
    tmp_path: Path, endpoint: str
) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    web = web_config_with_users(tmp_path, {"prometheus": hashed})
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(endpoint, POOLS))
    honest = basic_auth_header("prometheus", PASSWORD)
    with running_exporter(
        "--config.file",
        str(config),
        "--web.config.file",
        str(web),
        workdir=tmp_path,
        auth=("prometheus", PASSWORD),
    ) as exporter:
        url = f"{exporter.base_url}/-/healthy"
        stop = threading.Event()
        refused: list[int] = []

        def flood(number: int) -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    response = session.get(url, auth=("prometheus", f"guess-{number}"), timeout=30)
                    refused.append(response.status_code)

        flooders = [threading.Thread(target=flood, args=(n,)) for n in range(80)]
        for thread in flooders:
            thread.start()
        waits = []
        try:
            time.sleep(0.5)
            for _ in range(20):
                started = time.monotonic()
                assert http_get(url, honest, timeout=30) == "Healthy\n"
                waits.append(time.monotonic() - started)
                time.sleep(0.1)
            metrics_started = time.monotonic()
            assert "cognito_user_import_jobs" in http_get(f"{exporter.base_url}/metrics", honest)
            metrics_took = time.monotonic() - metrics_started
        finally:
            stop.set()
            for thread in flooders:
                thread.join(timeout=60)
    # wrong passwords are refused; past the checks that may wait, told to come back
    assert set(refused) == {401, 503}
    assert len(refused) > 80
    assert max(waits) < 1.0, waits
    assert metrics_took < 2.0


def test_a_wrong_password_takes_as_long_for_a_known_user_as_for_an_unknown_one() -> None:
    cheap = bcrypt.hashpw(b"cheap", bcrypt.gensalt(4)).decode()
    costly = bcrypt.hashpw(b"costly", bcrypt.gensalt(10)).decode()
    auth = BasicAuth({"cheap": cheap, "costly": costly})

    def header(user: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:wrong".encode()).decode()

    async def timed(user: str) -> float:
        started = time.monotonic()
        assert await auth.verify(header(user)) is Verdict.REFUSED
        return time.monotonic() - started

    async def measure() -> dict[str, float]:
        times: dict[str, list[float]] = {"cheap": [], "costly": [], "unknown": []}
        for _ in range(5):
            for user in times:
                times[user].append(await timed(user))
        return {user: statistics.median(values) for user, values in times.items()}

    medians = asyncio.run(measure())
    slowest, fastest = max(medians.values()), min(medians.values())
    assert fastest > 0.02, medians  # all of them pay for a cost-10 check
    assert slowest / fastest < 1.3, medians


def test_bcrypt_checks_beyond_the_queue_are_refused_at_once() -> None:
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(10)).decode()
    auth = BasicAuth({"user": hashed}, max_waiting=2)
    wrong = "Basic " + base64.b64encode(b"user:wrong").decode()

    async def flood() -> list[tuple[Verdict, float]]:
        async def one() -> tuple[Verdict, float]:
            started = time.monotonic()
            verdict = await auth.verify(wrong)
            return verdict, time.monotonic() - started

        return await asyncio.gather(*(one() for _ in range(10)))

    outcomes = asyncio.run(flood())
    # one check running and two waiting: the seven others are told at once to come back,
    # never that their password is wrong
    assert sorted(verdict.value for verdict, _ in outcomes) == ["busy"] * 7 + ["refused"] * 3
    assert all(took < 0.01 for verdict, took in outcomes if verdict is Verdict.BUSY)


def test_a_reload_keeps_honest_clients_remembered_through_a_flood(tmp_path: Path) -> None:
    """A flood of wrong passwords fills the checks; a client remembered before a reload
    that kept its user's hash is let in at once, and one never checked is told 503."""
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(10)).decode()
    successes = SuccessCache()
    before = BasicAuth({"user": hashed}, successes=successes, max_waiting=0)
    honest = "Basic " + base64.b64encode(b"user:right").decode()
    other = "Basic " + base64.b64encode(b"other:right").decode()
    wrong = "Basic " + base64.b64encode(b"user:wrong").decode()

    async def scenario() -> list[Verdict]:
        assert await before.verify(honest) is Verdict.GRANTED
        reloaded = BasicAuth({"user": hashed, "other": hashed}, successes=successes, max_waiting=0)
        flood = asyncio.gather(*(reloaded.verify(wrong) for _ in range(3)))
        await asyncio.sleep(0)  # the flood takes the one check that may run
        during = [await reloaded.verify(honest), await reloaded.verify(other)]
        await flood
        rotated = BasicAuth({"user": bcrypt.hashpw(b"right", bcrypt.gensalt(4)).decode()})
        return [*during, await rotated.verify(wrong)]

    assert asyncio.run(scenario()) == [Verdict.GRANTED, Verdict.BUSY, Verdict.REFUSED]


@pytest.mark.parametrize("protocol", ["HTTP/1.1", "HTTP/2"])
def test_debug_logs_carry_no_credential_over_either_protocol(
    tmp_path: Path, endpoint: str, protocol: str
) -> None:
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config: {cert_file: server.pem, key_file: server.pem}\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(endpoint, POOLS))
    ca = str(tmp_path / "ca.pem")
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    with running_exporter(
        "--config.file",
        str(config),
        "--web.config.file",
        str(web),
        "--log.level",
        "debug",
        workdir=tmp_path,
        scheme="https",
        ca_file=ca,
        auth=("prometheus", PASSWORD),
    ) as exporter:
        port = int(exporter.base_url.rsplit(":", 1)[1])
        for path in ("/metrics", "/-/healthy", "/nope"):
            if protocol == "HTTP/2":
                client = ssl.create_default_context(cafile=ca)
                client.set_alpn_protocols(["h2"])
                headers, _ = h2_get(port, client, [("authorization", f"Basic {token}")], path)
                assert headers[0][0] == b":status"
                h2_get(port, client, [("authorization", "Basic d3Jvbmc6Z3Vlc3M=")], path)
            else:
                requests.get(
                    exporter.base_url + path, auth=("prometheus", PASSWORD), verify=ca, timeout=30
                )
        log = exporter.log()
    assert "level=debug" in log  # the level was in force
    assert PASSWORD not in log
    assert token not in log
    assert "authorization" not in log.lower()
