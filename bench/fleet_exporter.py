"""The exporter as Prometheus sees it: its own process started from a config file, scraped over
HTTP with the scrape-timeout header, each answer read into what the fleet benchmark checks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.fleet_world import ACCOUNT_ID
from bench.world import ACCESS_KEY_ID, SECRET_ACCESS_KEY, counts_of
from exporter.demo.model import PoolCounts

PREFIX = "cognito_user_import_"
READY_WITHIN_SECONDS = 30.0
ANSWER_GRACE_SECONDS = 5.0
WARNING_LEVELS = ("warn", "error")


@dataclass
class PoolView:
    """One pool in one answer: its last refresh's outcome and when it last succeeded, and the
    values served (None when the answer carries none)."""

    success: float | None = None
    refreshed_at: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # api_errors_total by error code

    def counts(self) -> PoolCounts | None:
        if not self.users:
            return None
        return counts_of(self.statuses, self.users)


@dataclass(frozen=True)
class Answer:
    """A scrape: when it was sent and answered (wall clock), every pool in it, and the
    region gauges (name without the prefix -> value)."""

    sent: float
    answered: float
    pools: dict[str, PoolView]
    region: dict[str, float]


def config_text(endpoint: str, pool_ids: Sequence[str], scrape: Mapping[str, object]) -> str:
    settings = "".join(f"  {key}: {value}\n" for key, value in scrape.items()) or "  {}\n"
    pools = "".join(f"  - {{id: {pool_id}}}\n" for pool_id in pool_ids)
    return (
        f"defaults: {{endpoint_url: {endpoint}, credentials: bench}}\n"
        f"credentials:\n  bench: {{access_key_id: {ACCESS_KEY_ID}, "
        f'secret_access_key: {SECRET_ACCESS_KEY}, account_id: "{ACCOUNT_ID}"}}\n'
        f"scrape:\n{settings}pools:\n{pools}"
    )


class ExporterProcess:
    def __init__(self, base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url = base_url
        self.process = process
        self._log = log

    def scrape(self, timeout: float) -> Answer:
        """One scrape as Prometheus makes it, with `timeout` in its header."""
        request = urllib.request.Request(  # noqa: S310 - the loopback URL started here
            f"{self.base_url}/metrics",
            headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{timeout:g}"},
        )
        sent = time.time()
        answer_within = timeout + ANSWER_GRACE_SECONDS
        with urllib.request.urlopen(request, timeout=answer_within) as response:  # noqa: S310
            text = response.read().decode()
        return read_answer(text, sent, time.time())

    def warnings(self) -> dict[str, int]:
        """Warning and error lines logged so far, counted by message."""
        counted: dict[str, int] = {}
        for line in self._log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                event = {"level": "error", "msg": line}
            if isinstance(event, dict) and event.get("level") in WARNING_LEVELS:
                message = str(event.get("msg"))
                if event.get("error"):
                    message += f": {event['error']}"
                counted[message] = counted.get(message, 0) + 1
        return counted


@contextmanager
def running_exporter(config: str, *flags: str) -> Iterator[ExporterProcess]:
    """The exporter's console entry on a free loopback port, its log in a file."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as folder:
        config_file = Path(folder) / "config.yaml"
        config_file.write_text(config)
        log = Path(folder) / "exporter.log"
        port = free_port()
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "exporter",
                    "--config.file",
                    str(config_file),
                    "--web.listen-address",
                    f"127.0.0.1:{port}",
                    "--log.level",
                    "warn",
                    "--log.format",
                    "json",
                    *flags,
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        exporter = ExporterProcess(f"http://127.0.0.1:{port}", process, log)
        try:
            wait_until_ready(exporter)
            yield exporter
        finally:
            process.terminate()
            process.wait(timeout=10)


def wait_until_ready(exporter: ExporterProcess) -> None:
    give_up = time.monotonic() + READY_WITHIN_SECONDS
    while True:
        if exporter.process.poll() is not None:
            raise RuntimeError(f"the exporter exited with {exporter.process.returncode}")
        try:
            ready = f"{exporter.base_url}/-/ready"
            with urllib.request.urlopen(ready, timeout=1):  # noqa: S310 - loopback, started here
                return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_answer(text: str, sent: float, answered: float) -> Answer:
    pools: dict[str, PoolView] = {}
    region: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(PREFIX)
            labels = sample.labels
            pool_id = labels.get("user_pool_id")
            if not pool_id:
                if "account_id" in labels and "region" in labels:
                    region[name] = sample.value
                continue
            try:
                read_sample(pools.setdefault(pool_id, PoolView()), name, labels, sample.value)
            except KeyError as error:
                raise ValueError(f"{sample.name} without its {error} label") from None
            except OverflowError:
                raise ValueError(f"{sample.name} {sample.value} is not a count") from None
    return Answer(sent, answered, pools, region)


def read_sample(view: PoolView, name: str, labels: Mapping[str, str], value: float) -> None:
    if name == "scrape_success":
        view.success = value
    elif name == "scrape_last_success_timestamp_seconds":
        view.refreshed_at = value
    elif name == "jobs" and value:
        view.statuses[labels["status"]] = int(value)
    elif name == "users_total":
        view.users[labels["outcome"]] = int(value)
    elif name == "api_errors_total":
        view.errors[labels["error_code"]] = int(value)
