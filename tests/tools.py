"""What many tests need: the real tools (promtool, prometheus, chromium, ...), free ports,
waiting for something to hold, an HTTP/2 request."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest


def require_tool(name: str) -> str:
    """Return the tool's path; skip when it is missing, unless under CI where that fails."""
    path = shutil.which(name)
    if path is None:
        repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        # the virtualenv's tools, and those scripts/install/ puts into .cache/bin
        for folder in (os.path.join(repo, ".venv", "bin"), os.path.join(repo, ".cache", "bin")):
            candidate = os.path.join(folder, name)
            if os.access(candidate, os.X_OK):
                return candidate
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def holds_within(condition: Callable[[], bool], within: float, interval: float = 0.05) -> bool:
    """Whether `condition()` holds within `within` seconds, asked every `interval`. A
    condition that raises OSError (a server not up yet) does not hold yet; one that raises
    AssertionError (a process that ended) ends the wait."""
    deadline = time.monotonic() + within
    while True:
        try:
            if condition():
                return True
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def wait_until(
    condition: Callable[[], bool], within: float, what: str, interval: float = 0.05
) -> None:
    """Return once `condition()` holds; AssertionError naming `what` if it does not in time."""
    if not holds_within(condition, within, interval):
        raise AssertionError(f"{what}: not within {within:g} s")


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on the port (OSError while nothing does)."""
    with socket.create_connection((host, port), timeout=0.5):
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def h2_get(
    port: int, client: ssl.SSLContext, headers: list[tuple[str, str]], path: str = "/metrics"
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """One GET over HTTP/2 and TLS: the response headers and body."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    connection.send_headers(
        1,
        [
            (":method", "GET"),
            (":path", path),
            (":scheme", "https"),
            (":authority", "127.0.0.1"),
            *headers,
        ],
        end_stream=True,
    )
    response: list[tuple[bytes, bytes]] = []
    body = b""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        tls.sendall(connection.data_to_send())
        ended = False
        while not ended:
            for event in connection.receive_data(tls.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    response = [(bytes(name), bytes(value)) for name, value in event.headers or []]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data or b""
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            tls.sendall(connection.data_to_send())
        connection.close_connection()
        tls.sendall(connection.data_to_send())
    return response, body


def config_check(config_file: Path) -> subprocess.CompletedProcess[str]:
    """`cognito-import-exporter --config.check` on `config_file`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--config.check", f"--config.file={config_file}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
