"""Reloads: whatever a config implies is built before anything switches, a refused reload
changes nothing at all, a reload applies everything it says, and a reload in the middle of
a scrape fails none of the scrape's collections."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from exporter.app import Runtime
from exporter.config.load import load, load_text
from exporter.config.model import Config
from exporter.demo.service import SimulatedCognito
from exporter.web.routes import ExporterApp, ReloadOutcome
from exporter.web.webconfig import load_web_config
from tests.exporter_process import http_get, running_exporter, samples, value
from tests.simulated import assert_exact, config_yaml, populate
from tests.tools import wait_until
from tests.wsgi import call

POOLS = ("eu-west-1_Reload1", "eu-west-1_Reload2")
EXPORTER = (sys.executable, "-m", "exporter")


@pytest.fixture
def model() -> SimulatedCognito:
    model = SimulatedCognito(seed=41)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 25, seed, active_newest=2)
    return model


@pytest.fixture
def shared_aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Shared AWS config files of the test's own, with one working and one broken profile."""
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text(
        "[profile reader]\nregion = eu-west-1\n"
        "[profile broken]\nrole_arn = arn:aws:iam::123456789012:role/x\n"
        "source_profile = nowhere\n"
    )
    (aws / "credentials").write_text(
        "[reader]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = not-a-secret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws / "credentials"))
    return aws


# each: a change to the good file, and the one line that refuses it
UNBUILDABLE: dict[str, tuple[Callable[[str], str], str]] = {
    "missing profile": (
        lambda text: text.replace(
            "credentials:\n", "credentials:\n  p: {profile: no-such-profile}\n"
        ).replace("  - id: eu-west-1_Reload2\n", "  - {id: eu-west-1_Reload2, credentials: p}\n"),
        'credentials.p.profile: no profile "no-such-profile" in the shared AWS config files',
    ),
    "endpoint without a host": (
        lambda text: re.sub(r"endpoint_url: \S+,", "endpoint_url: 'http://:80',", text),
        "defaults.endpoint_url: endpoint_url must be an http:// or https:// URL with a host",
    ),
    "region with a newline": (
        lambda text: text.replace("defaults: {", 'defaults: {region: "eu-west-1\\n", '),
        'defaults.region: "eu-west-1\\n" is not an AWS region name (like eu-west-1)',
    ),
    "timeout past any clock": (
        lambda text: text.replace("timeout: 20s", "timeout: 1e10"),
        "scrape.timeout: a duration must be at most 366d",
    ),
}


def good_config(endpoint: str) -> str:
    return config_yaml(endpoint, POOLS, scrape={"timeout": "20s"})


def unbuildable_config(endpoint: str, case: str) -> str:
    change, _ = UNBUILDABLE[case]
    # a different probe setting too: none of the file may take effect
    return change(good_config(endpoint)) + "probe: {allow_unlisted: true, credentials: test}\n"


@pytest.mark.parametrize("case", sorted(UNBUILDABLE))
def test_config_check_refuses_what_cannot_be_built_with_one_line(
    case: str, tmp_path: Path, shared_aws_files: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(unbuildable_config("http://127.0.0.1:9", case))
    for flags in (["--config.check"], ["--web.listen-address", "127.0.0.1:0"]):
        finished = subprocess.run(
            [sys.executable, "-m", "exporter", *flags, "--config.file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (finished.returncode, finished.stderr) == (1, UNBUILDABLE[case][1] + "\n"), flags


def test_a_profile_botocore_cannot_use_passes_the_check_but_not_the_start(
    tmp_path: Path, shared_aws_files: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "credentials: {b: {profile: broken}}\npools: [{id: eu-west-1_Reload1, credentials: b}]\n"
    )
    run = [sys.executable, "-m", "exporter", "--config.file", str(path)]
    checked = subprocess.run(
        [*run, "--config.check"], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0
    started = subprocess.run(
        [*run, "--web.listen-address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 1
    assert started.stderr.startswith('credentials "b" in eu-west-1: cannot build a client: ')
    assert started.stderr.count("\n") == 1
    assert "Traceback" not in started.stderr


@pytest.mark.parametrize("case", sorted(UNBUILDABLE))
def test_a_reload_that_cannot_be_built_keeps_the_old_config_entirely(
    case: str, tmp_path: Path, endpoint: str, model: SimulatedCognito, shared_aws_files: Path
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(good_config(endpoint))
    runtime = Runtime(lambda: load(str(path)))
    runtime.start()
    app = ExporterApp(runtime)
    before = runtime.config
    path.write_text(unbuildable_config(endpoint, case))

    status, _, body = call(app, "/-/reload", method="POST")

    assert (status, body.decode()) == (
        500,
        f"configuration not reloaded: {UNBUILDABLE[case][1]}\n",
    )
    assert runtime.config is before
    assert runtime.config.scrape.timeout == 20.0
    assert runtime.config.probe.allow_unlisted is False
    assert call(app, "/probe", query="target=eu-west-1_Other9")[0] == 404
    parsed = samples(call(app, "/metrics")[2].decode())
    assert value(parsed, "cognito_user_import_config_last_reload_successful") == 0
    assert value(parsed, "cognito_user_import_config_reloads_total", outcome="failure") == 1
    assert value(parsed, "cognito_user_import_config_reloads_total", outcome="success") == 1
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)
    runtime.close()


def test_a_reload_applies_max_jobs_per_pool_and_full_resync_interval_to_known_pools(
    endpoint: str, model: SimulatedCognito
) -> None:
    pool_id = "eu-west-1_Recent3"
    model.add_pool(pool_id, "recent", spawning=False)
    for index in range(12):
        created = time.time() - 3600 + index * 60
        model.add_job(
            pool_id,
            name=f"recent {index}",
            status="Succeeded",
            created=created,
            started=created + 1,
            completed=created + 2,
            imported=10,
        )
    text = [config_yaml(endpoint, [pool_id], scrape={"max_jobs_per_pool": 3}, page_size=5)]
    runtime = Runtime(lambda: load_text(text[0]))
    runtime.start()
    app = ExporterApp(runtime)

    def job_series() -> int:
        parsed = samples(call(app, "/metrics")[2].decode())
        return sum(1 for name, _ in parsed if name == "cognito_user_import_job_info")

    assert job_series() == 3
    text[0] = config_yaml(
        endpoint,
        [pool_id],
        scrape={"max_jobs_per_pool": 10, "full_resync_interval": "1h"},
        page_size=5,
    )
    assert runtime.reload().ok
    assert job_series() == 10
    model.reset_calls()
    assert job_series() == 10
    assert model.pool_call_counts() == {pool_id: 1}

    text[0] = config_yaml(
        endpoint,
        [pool_id],
        scrape={"max_jobs_per_pool": 10, "full_resync_interval": "0s"},
        page_size=5,
    )
    assert runtime.reload().ok
    model.reset_calls()
    job_series()
    # 12 jobs at 5 a page: the shorter interval made the next scrape a full read
    assert model.pool_call_counts() == {pool_id: 3}
    runtime.close()


@pytest.mark.parametrize("change", ["unchanged", "new concurrency"])
def test_a_reload_during_a_scrape_fails_none_of_its_collections(
    change: str, endpoint: str, model: SimulatedCognito
) -> None:
    slow = ("eu-west-1_Slow4", "eu-west-1_Slow5", "eu-west-1_Slow6")
    for seed, pool_id in enumerate(slow):
        populate(model, pool_id, 25, seed, active_newest=2)
    model.faults.latency = 0.25
    texts = {
        "unchanged": config_yaml(endpoint, slow, scrape={"max_concurrency": 1}, page_size=10),
        "new concurrency": config_yaml(endpoint, slow, scrape={"max_concurrency": 4}, page_size=10),
    }
    current = [texts["unchanged"]]
    runtime = Runtime(lambda: load_text(current[0]))
    runtime.start()
    app = ExporterApp(runtime)
    answers: list[tuple[float, bytes]] = []

    def scrape() -> None:
        started = time.monotonic()
        body = call(app, "/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "20"})[2]
        answers.append((time.monotonic() - started, body))

    scraping = threading.Thread(target=scrape)
    scraping.start()
    wait_until(lambda: model.calls["ListUserImportJobs"] >= 2, 10, "the scrape under way")
    current[0] = texts[change]
    assert runtime.reload().ok
    scraping.join(timeout=30)

    [(took, body)] = answers
    parsed = samples(body.decode())
    for pool_id in slow:
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
        assert_exact(parsed, model, pool_id)
    # 9 pages one after another at 0.25 s: done long before the 19.5 s budget
    assert took < 6
    runtime.close()


def test_a_sighup_with_bytes_that_are_not_utf8_is_refused_counted_and_never_logged(
    tmp_path: Path, endpoint: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(good_config(endpoint))
    with running_exporter("--config.file", str(path), workdir=tmp_path) as exporter:
        exporter.scrape()
        planted = b"credentials: {s: {secret_access_key: PLANTED-SECRET-9f2e\xff}}\n"
        path.write_bytes(planted)
        exporter.process.send_signal(signal.SIGHUP)
        exporter.wait_for_log("configuration reload failed")
        parsed = samples(exporter.scrape())
        log = exporter.log()
    assert value(parsed, "cognito_user_import_config_last_reload_successful") == 0
    assert value(parsed, "cognito_user_import_config_reloads_total", outcome="failure") == 1
    for pool_id in POOLS:
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
    [line] = [line for line in log.splitlines() if "reload failed" in line]
    assert f"{path}: not UTF-8 text at byte {planted.index(0xFF)}" in line
    assert "PLANTED" not in log
    assert "Traceback" not in log
    assert "never retrieved" not in log


def test_a_flood_of_sighups_makes_few_reloads_and_the_server_keeps_answering(
    tmp_path: Path, endpoint: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(good_config(endpoint))
    with running_exporter("--config.file", str(path), workdir=tmp_path) as exporter:
        for _ in range(200):
            exporter.process.send_signal(signal.SIGHUP)
        started = time.monotonic()
        assert http_get(f"{exporter.base_url}/-/healthy") == "Healthy\n"
        answered_after = time.monotonic() - started
        time.sleep(1)
        loaded = exporter.log().count("configuration loaded")
    assert answered_after < 1
    # the first load, then reloads that coalesce: never one per signal
    assert 2 <= loaded <= 10


def test_nothing_a_file_holds_blocks_a_reload(tmp_path: Path, endpoint: str) -> None:
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    path = tmp_path / "config.yaml"
    path.write_text(good_config(endpoint))
    runtime = Runtime(lambda: load(str(path)))
    runtime.start()
    path.write_text(
        good_config(endpoint).replace(
            "credentials:\n",
            f"credentials:\n  f: {{access_key_id: AKIAEXAMPLE, secret_access_key_file: {fifo}}}\n",
        )
    )
    started = time.monotonic()
    outcome = runtime.reload()
    assert time.monotonic() - started < 2
    assert not outcome.ok
    assert outcome.message == (
        "configuration not reloaded: credentials.f: secret_access_key_file: "
        f"{fifo}: is a FIFO, not a regular file"
    )
    runtime.close()


def test_a_reload_that_turns_tls_on_or_off_is_refused(tmp_path: Path, endpoint: str) -> None:
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    web = tmp_path / "web.yml"
    web.write_text("")
    path = tmp_path / "config.yaml"
    path.write_text(good_config(endpoint))
    runtime = Runtime(lambda: load(str(path)), lambda: load_web_config(str(web)))
    runtime.start()
    refusal = (
        "configuration not reloaded: tls_server_config: turning TLS on or off needs a restart; "
        "the listening socket keeps the protocol it started with"
    )
    web.write_text("tls_server_config: {cert_file: server.pem, key_file: server.pem}\n")
    assert runtime.reload() == ReloadOutcome(False, refusal)
    assert runtime.web_config.ssl_context is None
    tls_runtime = Runtime(lambda: load(str(path)), lambda: load_web_config(str(web)))
    tls_runtime.start()
    web.write_text("")
    assert tls_runtime.reload() == ReloadOutcome(False, refusal)
    assert tls_runtime.web_config.ssl_context is not None
    runtime.close()
    tls_runtime.close()


def test_reloads_take_turns_reading_the_files(endpoint: str) -> None:
    """A reload that starts later is the one in force, however long the earlier one takes to
    read its files."""
    texts = iter(
        [
            config_yaml(endpoint, POOLS),
            config_yaml(endpoint, POOLS[:1]),  # read slowly by the first reload
            config_yaml(endpoint, POOLS[1:]),  # read by the second, started meanwhile
        ]
    )
    first_reading = threading.Event()

    def load_next() -> Config:
        text = next(texts)
        if text == config_yaml(endpoint, POOLS[:1]):
            first_reading.set()
            time.sleep(0.5)
        return load_text(text)

    runtime = Runtime(load_next)
    runtime.start()
    earlier = threading.Thread(target=runtime.reload)
    earlier.start()
    first_reading.wait(5)
    assert runtime.reload().ok
    earlier.join(5)
    assert [pool.id for pool in runtime.config.pools] == list(POOLS[1:])
    runtime.close()


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler of its own for `signum` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_a_sighup_while_a_large_config_loads_does_not_end_the_process(
    tmp_path: Path, endpoint: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config_yaml(endpoint, [f"eu-west-1_Many{index}" for index in range(20_000)]))
    log = tmp_path / "exporter.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*EXPORTER, "--config.file", str(path), "--web.listen-address", "127.0.0.1:0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: catches(process.pid, signal.SIGHUP), 30, "a SIGHUP handler")
        assert "configuration loaded" not in log.read_text()
        process.send_signal(signal.SIGHUP)

        def reloaded() -> bool:
            assert process.poll() is None, log.read_text()
            return log.read_text().count("configuration loaded") == 2

        # the reload asked for while loading is made once the server takes signals
        wait_until(reloaded, 60, "the start and the reload asked for meanwhile")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_listen_address_in_use_ends_the_start_with_one_line(
    tmp_path: Path, endpoint: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(good_config(endpoint))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = subprocess.run(
            [*EXPORTER, "--config.file", str(path), "--web.listen-address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert finished.returncode == 1
    [line] = [line for line in finished.stderr.splitlines() if "cannot serve" in line]
    assert 'error="Address already in use"' in line
    assert "listening" not in finished.stderr
    assert "Traceback" not in finished.stderr
