"""A real Prometheus scraping the exporter's demo, for the tests that need one.

running_demo starts the exporter's demo (a simulated Cognito) and running_prometheus a
Prometheus that scrapes it, optionally evaluating rule files; Prometheus is a client for the
parts of its HTTP API the tests use.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.prometheus_releases import PrometheusRelease
from tests.tools import free_port, holds_within

REPO = Path(__file__).resolve().parent.parent
SCRAPE_JOB = "cognito-import-exporter"
STARTUP_DEADLINE_SECONDS = 60.0

Json = dict[str, Any]
JobKey = tuple[str, str]


def serves(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


def alive(process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    if process.poll() is not None:
        raise AssertionError(f"{name} exited with {process.returncode}:\n{read_log(log)}")


class Prometheus:
    """A client for Prometheus' HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Json:
        """The data of a successful answer from an API endpoint."""
        body: Json = requests.get(f"{self.url}{path}", params=params, timeout=10).json()
        assert body["status"] == "success", f"{path} {params}: {body.get('error')}"
        data: Json = body["data"]
        return data

    def query(self, expr: str, at: float | None = None) -> Json:
        """The whole answer to an instant query, successful or not."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        body: Json = response.json()
        return body

    def query_range(self, expr: str, seconds: float, step_seconds: float) -> Json:
        """The whole answer to a range query over the last seconds, successful or not."""
        end = time.time()
        params: dict[str, str | float] = {
            "query": expr,
            "start": end - seconds,
            "end": end,
            "step": step_seconds,
        }
        response = requests.get(f"{self.url}/api/v1/query_range", params=params, timeout=10)
        body: Json = response.json()
        return body

    def vector(self, expr: str, at: float | None = None) -> list[Json]:
        """The result of a successful instant query."""
        body = self.query(expr, at)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        result: list[Json] = body["data"]["result"]
        return result

    def scrape_health(self) -> list[tuple[str, str]]:
        """(health, last error) of each scrape target, to explain a missing scrape."""
        targets = requests.get(f"{self.url}/api/v1/targets", timeout=10).json()
        return [(t["health"], t["lastError"]) for t in targets["data"]["activeTargets"]]

    def jobs(self, expr: str) -> dict[JobKey, str]:
        """(user_pool_id, job_id) -> job_name for every job the expression returns."""
        result = self.get("/api/v1/query", query=expr)["result"]
        return {
            (series["metric"]["user_pool_id"], series["metric"]["job_id"]): series["metric"][
                "job_name"
            ]
            for series in result
        }

    def rules(self) -> list[Json]:
        groups = self.get("/api/v1/rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def firing(self, alertname: str) -> dict[JobKey, str]:
        """(user_pool_id, job_id) -> job_name for every firing alert of that name."""
        return {
            (alert["labels"]["user_pool_id"], alert["labels"]["job_id"]): alert["labels"][
                "job_name"
            ]
            for alert in self.get("/api/v1/alerts")["alerts"]
            if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"
        }


@contextmanager
def running_demo(workdir: Path) -> Iterator[str]:
    """The address of the exporter's demo, serving /metrics; its log goes to workdir."""
    address = f"127.0.0.1:{free_port()}"
    log = workdir / "exporter.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--demo", "--web.listen-address", address],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            alive(process, "the exporter", log)
            return serves(f"http://{address}/metrics")

        assert holds_within(ready, STARTUP_DEADLINE_SECONDS), (
            f"the demo did not serve /metrics:\n{read_log(log)}"
        )
        yield address
    finally:
        stop(process)


@contextmanager
def running_prometheus(
    workdir: Path,
    release: PrometheusRelease,
    scrape_targets: Sequence[str],
    rule_files: Sequence[Path] = (),
    job_name: str = SCRAPE_JOB,
    scrape_interval_seconds: int = 1,
    scraped: str | None = None,
) -> Iterator[Prometheus]:
    """A Prometheus of that release scraping the targets as job_name and evaluating the rule
    files.

    Its configuration, data and log are in workdir. It is handed out once it is ready and the
    PromQL expression scraped returns data; by default that is once the last scrape of the
    targets succeeded. The rules are evaluated as often as the targets are scraped.
    """
    interval = f"{scrape_interval_seconds}s"
    settings: Json = {"scrape_interval": interval, "scrape_timeout": interval}
    document: Json = {
        "global": settings,
        "scrape_configs": [
            {"job_name": job_name, "static_configs": [{"targets": list(scrape_targets)}]}
        ],
    }
    if rule_files:
        settings["evaluation_interval"] = interval
        document["rule_files"] = [str(path) for path in rule_files]
    scraped_expr = f'up{{job="{job_name}"}} == 1' if scraped is None else scraped
    with running_prometheus_with(workdir, release, document, scraped_expr) as server:
        yield server


@contextmanager
def running_prometheus_with(
    workdir: Path, release: PrometheusRelease, document: Json, scraped: str | None
) -> Iterator[Prometheus]:
    """A Prometheus of that release with the whole configuration `document`, its data and log
    in workdir, handed out once it is ready and the PromQL expression `scraped` returns data
    (at once when it is None: the first scrapes come up to 5 s later, when discovery first
    reports)."""
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")

    address = f"127.0.0.1:{free_port()}"
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                release.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        server = Prometheus(f"http://{address}")

        def ready() -> bool:
            alive(process, "prometheus", log)
            return serves(f"{server.url}/-/ready")

        assert holds_within(ready, STARTUP_DEADLINE_SECONDS), (
            f"prometheus did not become ready:\n{read_log(log)}"
        )

        def scraped_enough(expr: str) -> bool:
            alive(process, "prometheus", log)
            return bool(server.vector(expr))

        if scraped is not None:
            assert holds_within(lambda: scraped_enough(scraped), STARTUP_DEADLINE_SECONDS), (
                f"prometheus did not scrape its targets, {scraped} returned nothing: "
                f"{server.scrape_health()}\n{read_log(log)}"
            )
        yield server
    finally:
        stop(process)
