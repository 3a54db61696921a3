"""The exporter process behind its web config: TLS, basic auth, and a reload of both."""

from __future__ import annotations

import datetime
import signal
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import requests
import trustme

from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from tests.exporter_process import running_exporter, samples, value
from tests.simulated import populate

PASSWORD = "correct horse battery staple"


def test_basic_auth_over_tls_and_reload_of_the_web_config(tmp_path: Path) -> None:
    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1", "localhost")
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=6)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n"
        "  cert_file: server.pem\n  key_file: server.pem\n  min_version: TLS12\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
        "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    )
    model = SimulatedCognito(seed=51)
    populate(model, "eu-west-1_Sec1", 5, 1, active_newest=0)
    simulator = SimulatorServer(model)
    endpoint = simulator.start()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
defaults: {{endpoint_url: {endpoint}, credentials: test}}
credentials: {{test: {{access_key_id: AKIAEXAMPLE, secret_access_key: not-a-real-secret}}}}
pools: [{{id: eu-west-1_Sec1}}]
"""
    )
    ca = str(tmp_path / "ca.pem")
    try:
        with running_exporter(
            "--config.file",
            str(config),
            "--web.config.file",
            str(web),
            workdir=tmp_path,
            scheme="https",
            ca_file=ca,
            auth=("prometheus", PASSWORD),
        ) as exporter:
            url = exporter.base_url
            anonymous = requests.get(f"{url}/metrics", verify=ca, timeout=30)
            wrong = requests.get(
                f"{url}/metrics", verify=ca, auth=("prometheus", "nope"), timeout=30
            )
            right = requests.get(
                f"{url}/metrics", verify=ca, auth=("prometheus", PASSWORD), timeout=30
            )
            health = requests.get(f"{url}/-/healthy", verify=ca, timeout=30)

            web.write_text(web.read_text().replace("prometheus:", "grafana:"))
            exporter.process.send_signal(signal.SIGHUP)
            exporter.wait_for_log("configuration loaded", occurrences=2)
            old_user = requests.get(
                f"{url}/metrics", verify=ca, auth=("prometheus", PASSWORD), timeout=30
            )
            new_user = requests.get(
                f"{url}/metrics", verify=ca, auth=("grafana", PASSWORD), timeout=30
            )
            log = exporter.log()
    finally:
        simulator.stop()
    assert (anonymous.status_code, anonymous.headers["WWW-Authenticate"]) == (401, "Basic")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert 'cognito_user_import_scrape_success{user_pool_id="eu-west-1_Sec1"} 1.0' in right.text
    assert right.headers["X-Content-Type-Options"] == "nosniff"
    assert health.status_code == 401
    assert (old_user.status_code, new_user.status_code) == (401, 200)
    assert hashed not in log
    assert PASSWORD not in log


def test_a_broken_web_config_stops_the_start_with_its_problems(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config: {cert_file: missing.pem, key_file: missing.pem}\nbogus: 1\n")
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.check",
            "--web.config.file",
            str(web),
            "--config.file",
            str(Path(__file__).parent.parent / "config.example.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 1
    assert "bogus: unknown key" in checked.stderr
    assert "Traceback" not in checked.stderr


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rsa_key_exchange_suites_are_unknown_to_the_check_as_to_the_toolkit(
    tmp_path: Path,
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n"
        "  cipher_suites:\n  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
        "  - TLS_RSA_WITH_AES_128_GCM_SHA256\n"
    )
    checked = check(
        "--config.check",
        "--web.config.file",
        str(web),
        "--config.file",
        str(Path(__file__).parent.parent / "config.example.yaml"),
    )
    assert checked.returncode == 1
    assert checked.stderr.startswith(
        "tls_server_config.cipher_suites[1]: unknown cipher suite "
        '"TLS_RSA_WITH_AES_128_GCM_SHA256"; use one of TLS_ECDHE_'
    )


def test_the_demo_refuses_a_missing_web_config_like_a_normal_start(tmp_path: Path) -> None:
    started = check("--demo", "--web.config.file", str(tmp_path / "absent.yml"))
    assert (started.returncode, started.stderr.splitlines()[0]) == (
        1,
        f"{tmp_path}/absent.yml: cannot read: No such file or directory",
    )
    assert "Traceback" not in started.stderr


def issue(authority: trustme.CA, folder: Path, days: int) -> float:
    """A server certificate valid for `days`, renamed over server.pem as a renewal does;
    its expiry in seconds since the epoch."""
    expiry = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    expiry += datetime.timedelta(days=days)
    leaf = authority.issue_cert("127.0.0.1", not_after=expiry)
    leaf.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem.new"))
    (folder / "server.pem.new").replace(folder / "server.pem")
    return expiry.timestamp()


def test_the_demo_serves_its_web_config_and_renewed_certificates_without_a_signal(
    tmp_path: Path,
) -> None:
    first_ca, renewed_ca = trustme.CA(), trustme.CA()
    first_ca.cert_pem.write_to_path(str(tmp_path / "first-ca.pem"))
    renewed_ca.cert_pem.write_to_path(str(tmp_path / "renewed-ca.pem"))
    first_expiry = issue(first_ca, tmp_path, days=30)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n"
        f"basic_auth_users:\n  prometheus: {hashed}\n"
    )
    first, renewed = str(tmp_path / "first-ca.pem"), str(tmp_path / "renewed-ca.pem")
    auth = ("prometheus", PASSWORD)
    metric = "cognito_user_import_web_tls_certificate_not_after_timestamp_seconds"
    with running_exporter(
        "--demo",
        "--web.config.file",
        str(web),
        workdir=tmp_path,
        scheme="https",
        ca_file=first,
        auth=auth,
    ) as exporter:
        url = f"{exporter.base_url}/exporter-metrics"
        anonymous = requests.get(url, verify=first, timeout=30).status_code
        before = value(samples(requests.get(url, verify=first, auth=auth, timeout=30).text), metric)
        renewed_expiry = issue(renewed_ca, tmp_path, days=90)
        after = value(
            samples(requests.get(url, verify=renewed, auth=auth, timeout=30).text), metric
        )
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=first, auth=auth, timeout=30)
        log = exporter.log()
    assert anonymous == 401
    assert (before, after) == (first_expiry, renewed_expiry)
    assert log.count("TLS certificate files reloaded") == 1
    assert "https://" in log


def test_the_check_reports_both_files_problems_at_once(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("pools: [{id: eu-west-1_Sec1}]\nbogus: 1\n")
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.pem\n"
        "  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n"
    )
    checked = check("--config.check", "--config.file", str(config), "--web.config.file", str(web))
    assert checked.returncode == 1
    assert "bogus: unknown key" in checked.stderr
    assert (
        'tls_server_config.cipher_suites[0]: unknown cipher suite "TLS_RSA_WITH_AES_128_CBC_SHA"'
        in checked.stderr
    )
