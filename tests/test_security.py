"""The exporter process behind its web config: TLS, basic auth, and a reload of both."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import bcrypt
import requests
import trustme

from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from tests.exporter_process import running_exporter
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
