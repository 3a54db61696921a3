"""Starting the exporter as a user would (its console entry, a config file) and scraping it."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.tools import free_port, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def http_get(
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    ca_file: str | None = None,
) -> str:
    request = urllib.request.Request(url, headers=headers or {})
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        body: bytes = response.read()
        return body.decode()


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def wait_until_ready(
    base_url: str,
    process: subprocess.Popen[str],
    within: float = 20,
    headers: dict[str, str] | None = None,
    ca_file: str | None = None,
) -> None:

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"exporter exited with {process.returncode}")
        http_get(f"{base_url}/-/ready", headers, timeout=1, ca_file=ca_file)
        return True

    wait_until(ready, within, "exporter ready")


@dataclass
class RunningExporter:
    base_url: str
    process: subprocess.Popen[str]
    output: Path

    def log(self) -> str:
        return self.output.read_text()

    def wait_for_log(self, text: str, occurrences: int = 1, within: float = 20) -> None:
        wait_until(
            lambda: self.log().count(text) >= occurrences,
            within,
            f"{text!r} logged {occurrences} times",
        )

    def scrape(self, headers: dict[str, str] | None = None) -> str:
        return http_get(f"{self.base_url}/metrics", headers)


@contextmanager
def running_exporter(
    *args: str,
    workdir: Path,
    scheme: str = "http",
    ca_file: str | None = None,
    auth: tuple[str, str] | None = None,
) -> Iterator[RunningExporter]:
    """The exporter in its own process; stdout and stderr go to a file (a pipe could fill)."""
    port = free_port()
    output = workdir / f"exporter-{port}.log"
    with output.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "--web.listen-address", f"127.0.0.1:{port}", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
        )
    running = RunningExporter(f"{scheme}://127.0.0.1:{port}", process, output)
    try:
        wait_until_ready(
            running.base_url,
            process,
            headers=basic_auth_header(*auth) if auth else None,
            ca_file=ca_file,
        )
        yield running
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=10)


def samples(exposition: str) -> Samples:
    parsed: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            parsed[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return parsed


def value(parsed: Samples, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]
