"""The web tier of a running exporter under attack, as an outsider knowing only the README
would try it: HTTP/2 without TLS, stalled and reset HTTP/2 streams over TLS, scrapes crowding
out health checks, idle connections against a low descriptor limit, SIGTERM mid-scrape, and
requests RFC 9110/9112 allow that a naive server gets wrong. Counts and times are bounded;
everything listens on loopback."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import resource
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import psutil
import pytest
import trustme

from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from exporter.web.link import Limits
from exporter.web.webconfig import WebConfig, load_web_config
from tests.exporter_process import (
    RunningExporter,
    http_get,
    running_exporter,
    samples,
    wait_until_ready,
)
from tests.simulated import config_yaml, populate
from tests.tools import free_port, wait_until
from tests.web_server import serving

MIB = 2**20
POOLS = tuple(f"eu-west-1_Attack{index}" for index in range(8))
IO_TIMEOUT = 10.0  # ServerSettings.io_timeout


@dataclass
class Target:
    exporter: RunningExporter
    model: SimulatedCognito
    port: int
    ca: str | None


def _model() -> SimulatedCognito:
    model = SimulatedCognito(seed=18)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 120, seed, active_newest=3)
    return model


@contextlib.contextmanager
def _exporter(workdir: Path, tls: bool) -> Iterator[Target]:
    model = _model()
    simulator = SimulatorServer(model)
    endpoint = simulator.start()
    config = workdir / "config.yaml"
    config.write_text(config_yaml(endpoint, POOLS, page_size=60))
    args = ["--config.file", str(config)]
    ca = None
    if tls:
        authority = trustme.CA()
        authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            str(workdir / "server.pem")
        )
        ca = str(workdir / "ca.pem")
        authority.cert_pem.write_to_path(ca)
        web = workdir / "web.yml"
        web.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.pem\n")
        args += ["--web.config.file", str(web)]
    try:
        with running_exporter(
            *args, workdir=workdir, scheme="https" if tls else "http", ca_file=ca
        ) as exporter:
            port = int(exporter.base_url.rsplit(":", 1)[1])
            yield Target(exporter, model, port, ca)
    finally:
        simulator.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with _exporter(tmp_path_factory.mktemp("plain"), tls=False) as target:
        yield target


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with _exporter(tmp_path_factory.mktemp("tls"), tls=True) as target:
        yield target


def rss(target: Target) -> int:
    return int(psutil.Process(target.exporter.process.pid).memory_info().rss)


# --- raw HTTP/2 over TLS ----------------------------------------------------------------


class H2Client:
    """A raw HTTP/2 client over TLS that does only what it is told (no flow-control
    updates unless asked)."""

    def __init__(self, port: int, ca: str | None, window: int | None = None) -> None:
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        if window is not None:
            self.h2.local_settings = h2.settings.Settings(
                client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
            )
        self.h2.initiate_connection()
        self.reset: set[int] = set()
        self.ended: set[int] = set()
        self.statuses: dict[int, bytes] = {}
        self.closed = False
        self.goaway: int | None = None

    def request(self, path: str, count: int, reset: bool = False) -> list[int]:
        streams = []
        for _ in range(count):
            stream_id = self.h2.get_next_available_stream_id()
            headers = [
                (":method", "GET"),
                (":path", path),
                (":scheme", "https"),
                (":authority", "127.0.0.1"),
            ]
            self.h2.send_headers(stream_id, headers, end_stream=True)
            if reset:
                self.h2.reset_stream(stream_id)
            streams.append(stream_id)
        self.flush()
        return streams

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.StreamReset):
                self.reset.add(event.stream_id)
            elif isinstance(event, h2.events.ResponseReceived):
                self.statuses[event.stream_id] = dict(event.headers or [])[b":status"]
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.goaway = event.error_code
        with contextlib.suppress(OSError):
            self.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def pump(clients: list[H2Client], until: Callable[[], bool], within: float) -> bool:
    """Read the clients until `until()` or `within` seconds; whether `until()` came true."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + within
    try:
        while not until() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.2):
                client = key.data
                client.read()
                if client.closed:
                    selector.unregister(client.sock)
        return until()
    finally:
        selector.close()


# --- 1: HTTP/2 only over TLS; stalled streams reset; held bytes bounded ---------------


def test_http2_without_tls_is_not_spoken(plain: Target) -> None:
    with socket.create_connection(("127.0.0.1", plain.port), timeout=5) as client:
        client.sendall(h2_preface())
        answer = client.recv(4096)
    # an HTTP/1.1 refusal, not the server's SETTINGS frame
    assert answer.startswith(b"HTTP/1.1 505 ")


def h2_preface() -> bytes:
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    return connection.data_to_send()


@pytest.mark.slow
def test_stalled_http2_streams_are_reset_at_the_write_timeout_with_bounded_memory(
    tls: Target,
) -> None:
    before = rss(tls)
    clients = [H2Client(tls.port, tls.ca, window=0) for _ in range(4)]
    try:
        opened = [client.request("/metrics", 100) for client in clients]
        peak = [before]

        def all_reset() -> bool:
            peak[0] = max(peak[0], rss(tls))
            return all(
                set(streams) <= client.reset
                for client, streams in zip(clients, opened, strict=True)
            )

        started = time.monotonic()
        assert pump(clients, all_reset, IO_TIMEOUT + 15)
        took = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
    grown = (peak[0] - before) / 2**20
    print(
        f"400 stalled streams: all reset after {took:.1f} s; RSS {before / 2**20:.0f} MiB "
        f"+ {grown:.0f} MiB at peak"
    )
    assert took < IO_TIMEOUT + 10
    assert grown < 128  # the held answer bytes are bounded at 96 MiB in total
    assert http_get(f"{tls.exporter.base_url}/-/healthy", ca_file=tls.ca) == "Healthy\n"


def tls_web_config(tmp_path: Path) -> tuple[WebConfig, str]:
    """A web config serving TLS (HTTP/2 and HTTP/1.1 by ALPN), and its CA's file."""
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    issued.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca = str(tmp_path / "ca.pem")
    authority.cert_pem.write_to_path(ca)
    web_config = tmp_path / "web-config.yml"
    web_config.write_text(
        "tls_server_config:\n"
        f"  cert_file: {tmp_path / 'server.crt'}\n"
        f"  key_file: {tmp_path / 'server.key'}\n"
    )
    return load_web_config(str(web_config)), ca


def ok(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]


def test_a_rapid_reset_flood_ends_the_connection(tmp_path: Path) -> None:
    web, ca = tls_web_config(tmp_path)
    calls: list[str] = []

    def counted(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        calls.append(str(environ["PATH_INFO"]))
        return ok(environ, start_response)

    with serving(counted, web=lambda: web) as served:
        client = H2Client(served.port, ca)
        try:
            for _ in range(12):
                client.request("/metrics", 100, reset=True)
            assert pump([client], lambda: client.closed, 10)
        finally:
            client.close()
    assert client.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert len(calls) <= 4  # only what a worker started before its reset arrived


def test_a_tls_client_that_half_closes_is_not_logged_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    web, ca = tls_web_config(tmp_path)
    context = ssl.create_default_context(cafile=ca)
    with serving(ok, web=lambda: web) as served:
        for _ in range(20):
            raw = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                client.shutdown(socket.SHUT_WR)
                with contextlib.suppress(OSError):
                    client.recv(4096)
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_answer_bytes_held_for_stalled_streams_are_bounded_per_connection_and_in_total(
    tmp_path: Path,
) -> None:
    web, ca = tls_web_config(tmp_path)
    limits = Limits(held_per_connection=16 * MIB, held_in_total=40 * MIB)

    def big(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * (4 * MIB)]

    with serving(big, web=lambda: web, limits=limits, workers=8) as served:
        clients = [H2Client(served.port, ca, window=0) for _ in range(4)]
        try:
            for client in clients:
                client.request("/metrics", 8)
            assert pump(clients, lambda: sum(len(c.statuses) for c in clients) == 32, 20)
            held = served.held.held
        finally:
            for client in clients:
                client.close()
    answered = [sorted(client.statuses.values()).count(b"200") for client in clients]
    refused = sum(sorted(client.statuses.values()).count(b"503") for client in clients)
    print(f"32 stalled answers of 4 MiB: {answered} held per connection, {refused} refused")
    # 16 MiB a connection is 4 answers; 40 MiB in all is 10 answers
    assert max(answered) <= 4
    assert sum(answered) == 10
    assert refused == 22
    assert held == 40 * MIB


# --- 2: health and reload never wait behind scrapes -------------------------------------


@pytest.mark.slow
def test_health_and_reload_answer_at_once_while_scrapes_fill_every_worker(plain: Target) -> None:
    plain.model.faults.latency = 6.0
    url = plain.exporter.base_url
    scrapes = [
        threading.Thread(target=lambda: _quietly(lambda: http_get(f"{url}/metrics", timeout=40)))
        for _ in range(20)
    ]
    try:
        for scrape in scrapes:
            scrape.start()
        wait_until(lambda: plain.model.calls["ListUserImportJobs"] >= 1, 10, "scrapes under way")
        took = {}
        for path in ("/-/healthy", "/-/ready"):
            started = time.monotonic()
            assert http_get(f"{url}{path}", timeout=10) in ("Healthy\n", "Ready\n")
            took[path] = time.monotonic() - started
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", plain.port, timeout=10)
        connection.request("POST", "/-/reload")
        assert connection.getresponse().status == 200
        took["/-/reload"] = time.monotonic() - started
        connection.close()
    finally:
        plain.model.faults.latency = 0.0
        for scrape in scrapes:
            scrape.join(timeout=40)
    print(f"under 20 scrapes of 6 s: {took}")
    assert took["/-/healthy"] < 0.5
    assert took["/-/ready"] < 0.5
    assert took["/-/reload"] < 3.0


def _quietly(call: Callable[[], object]) -> None:
    with contextlib.suppress(OSError):
        call()


# --- 3: descriptors -----------------------------------------------------------------------


@contextlib.contextmanager
def exporter_with_descriptor_limit(workdir: Path, soft: int, hard: int) -> Iterator[Target]:
    model = _model()
    simulator = SimulatorServer(model)
    endpoint = simulator.start()
    config = workdir / "config.yaml"
    config.write_text(config_yaml(endpoint, POOLS[:2]))
    port = free_port()
    log = workdir / "exporter.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "exporter",
                "--config.file",
                str(config),
                "--web.listen-address",
                f"127.0.0.1:{port}",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=workdir,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process)
        yield Target(RunningExporter(base_url, process, log), model, port, None)
    finally:
        process.terminate()
        process.wait(timeout=10)
        simulator.stop()


@pytest.mark.slow
@pytest.mark.parametrize(("soft", "hard"), [(128, 4096), (128, 128)])
def test_idle_connections_past_the_descriptor_limit_leave_health_answered(
    tmp_path: Path, soft: int, hard: int
) -> None:
    with exporter_with_descriptor_limit(tmp_path, soft, hard) as target:
        idle = []
        try:
            for _ in range(200):
                idle.append(socket.create_connection(("127.0.0.1", target.port), timeout=5))
            took = []
            for _ in range(5):
                started = time.monotonic()
                assert http_get(f"{target.exporter.base_url}/-/healthy", timeout=5) == "Healthy\n"
                took.append(time.monotonic() - started)
            assert "cognito_user_import_jobs" in target.exporter.scrape()
        finally:
            for connection in idle:
                connection.close()
        log = target.exporter.log()
    print(f"soft {soft} hard {hard}, 200 idle connections: /-/healthy took {took}")
    assert max(took) < 1.0
    assert "out of system resource" not in log
    assert "Too many open files" not in log
    assert log.count("too many connections") <= 1
    assert log.count("too many connections") == (1 if hard == 128 else 0)


SERVE_AT_A_LOW_LIMIT = """
import resource, sys
from exporter.logs import configure
from tests.web_server import serving
from tests.test_web_attacks import ok
configure("info", "logfmt", sys.stderr)
resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
with serving(ok, cap=1000) as served:
    print(served.port, flush=True)
    sys.stdin.read()
"""


def test_running_out_of_descriptors_is_said_once_and_idle_connections_make_room() -> None:
    """A cap above the descriptor limit (as when something else holds descriptors): accepting
    fails with EMFILE, which is logged once and answered by closing idle connections."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE_AT_A_LOW_LIMIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    idle = []
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        for _ in range(100):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        took = []
        for _ in range(5):
            started = time.monotonic()
            assert exchange(port, b"GET / HTTP/1.0\r\n\r\n").endswith(b"ok\n")
            took.append(time.monotonic() - started)
    finally:
        for connection in idle:
            connection.close()
        _, errors = server.communicate("", timeout=20)
    print(f"descriptor limit 48, 100 idle connections: {took}")
    assert max(took) < 1.0
    assert errors.count("too many connections") == 1
    assert "out of file descriptors" in errors
    assert len(errors.splitlines()) == 1


# --- 4: work whose client is gone --------------------------------------------------------


@pytest.mark.slow
def test_reset_streams_call_nothing_count_nothing_and_log_nothing(tls: Target) -> None:
    url = tls.exporter.base_url
    errors_before = _timeouts(url, tls.ca)
    latency = tls.model.faults.latency = 0.5
    tls.model.reset_calls()
    log_before = tls.exporter.log()
    clients = [H2Client(tls.port, tls.ca) for _ in range(3)]
    try:
        for client in clients:
            client.request(f"/probe?target={POOLS[0]}", 100, reset=True)
        # the server stays answering on the same connections
        answered = clients[0].request("/-/healthy", 1)
        assert pump(clients[:1], lambda: set(answered) <= clients[0].ended, 10)
        time.sleep(latency * 2)  # a call made would have been counted by now
        after_resets = tls.model.calls["ListUserImportJobs"]
    finally:
        for client in clients:
            client.close()
    # a connection closed with its streams in flight: the probes no worker started never run
    closing = H2Client(tls.port, tls.ca)
    closing.request(f"/probe?target={POOLS[1]}", 30)
    wait_until(lambda: tls.model.calls["ListUserImportJobs"] >= 1, 10, "probes under way")
    closing.close()
    time.sleep(latency * 6)  # the probes that had started end
    tls.model.faults.latency = 0.0
    after_close = tls.model.calls["ListUserImportJobs"] - after_resets
    new_log = tls.exporter.log()[len(log_before) :]
    print(
        f"300 probe streams reset at once: {after_resets} ListUserImportJobs calls; "
        f"a connection of 30 probes closed: {after_close} calls"
    )
    assert after_resets == 0
    assert _timeouts(url, tls.ca) == errors_before
    assert after_close <= 8  # at most the 4 probe workers' collections, two pages each
    assert "level=error" not in new_log
    assert len(new_log.splitlines()) <= 1


def _timeouts(url: str, ca: str | None) -> float:
    parsed = samples(http_get(f"{url}/exporter-metrics", ca_file=ca))
    return sum(
        value
        for (name, labels), value in parsed.items()
        if name == "cognito_user_import_api_errors_total" and ("error_code", "Timeout") in labels
    )


# --- 5: SIGTERM mid-scrape ---------------------------------------------------------------


def test_sigterm_during_a_scrape_stops_quietly(tmp_path: Path) -> None:
    with _exporter(tmp_path, tls=False) as target:
        target.model.faults.latency = 5.0
        scrape = threading.Thread(
            target=lambda: _quietly(lambda: target.exporter.scrape()), daemon=True
        )
        scrape.start()
        wait_until(lambda: target.model.calls["ListUserImportJobs"] >= 1, 10, "a scrape under way")
        started = time.monotonic()
        target.exporter.process.send_signal(signal.SIGTERM)
        code = target.exporter.process.wait(timeout=10)
        took = time.monotonic() - started
        scrape.join(timeout=10)
        log = target.exporter.log()
    assert code == 0
    assert took < 1.5
    assert "level=error" not in log
    assert "CancelledError" not in log
    assert "Traceback" not in log


# --- 6: HTTP as RFC 9110 and 9112 say ----------------------------------------------------


def exchange(port: int, request: bytes, half_close: bool = False) -> bytes:
    """The server's whole reply to raw `request`, read until it closes (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request)
        if half_close:
            client.shutdown(socket.SHUT_WR)
        reply = b""
        with contextlib.suppress(TimeoutError):
            while chunk := client.recv(65536):
                reply += chunk
        return reply


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET http://127.0.0.1/-/healthy HTTP/1.1\r\nHost: elsewhere\r\n", b"200"),
        (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n", b"200"),
        (b"GET * HTTP/1.1\r\nHost: x\r\n", b"400"),
        (b"GET /-/healthy HTTP/1.1\r\n", b"400"),
        (b"GET /-/healthy HTTP/1.1\r\nHost: a\r\nHost: b\r\n", b"400"),
        (b"GET /-/healthy HTTP/1.1\r\nHost: a b\r\n", b"400"),
        (b"GET /-/healthy HTTP/1.0\r\n", b"200"),
        (b"BREW /-/healthy HTTP/1.1\r\nHost: x\r\n", b"501"),
        (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n", b"405"),
        (b"GET relative HTTP/1.1\r\nHost: x\r\n", b"400"),
        (b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n", b"501"),
        (
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n",
            b"400",
        ),
        (
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
            b"400",
        ),
    ],
)
def test_request_forms(plain: Target, request_bytes: bytes, status: bytes) -> None:
    reply = exchange(plain.port, request_bytes + b"Connection: close\r\n\r\n")
    assert reply.split(b" ", 2)[1] == status, reply[:200]
    if status == b"405":
        assert b"\r\nAllow: GET, HEAD\r\n" in reply


def test_a_body_on_get_is_read_and_ignored(plain: Target) -> None:
    reply = exchange(
        plain.port,
        b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\nGET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert reply.count(b"HTTP/1.1 200 ") == 2
    assert reply.endswith(b"Ready\n")


def test_expect_100_continue_is_answered_before_the_body(plain: Target) -> None:
    with socket.create_connection(("127.0.0.1", plain.port), timeout=5) as client:
        client.sendall(
            b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert client.recv(4096).startswith(b"HTTP/1.1 100 ")
        client.sendall(b"{}")
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_a_client_that_half_closes_gets_its_answer_and_the_close(plain: Target) -> None:
    started = time.monotonic()
    reply = exchange(plain.port, b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n", half_close=True)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith(b"Healthy\n")
    assert time.monotonic() - started < 2  # closed after the answer, not at keep-alive's end


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped", "status"),
    [
        ("gzip", True, 200),
        ("gzip;q=0", False, 200),
        ("GZIP; q=0.000, identity", False, 200),
        ("identity;q=0, gzip", True, 200),
        ("*", True, 200),
        ("*;q=0, identity", False, 200),
        ("br", False, 200),
        ("identity;q=0", None, 406),
        ("*;q=0", None, 406),
    ],
)
def test_content_codings(
    plain: Target, accept_encoding: str, gzipped: bool | None, status: int
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", plain.port, timeout=30)
    connection.request("GET", "/metrics", headers={"Accept-Encoding": accept_encoding})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == status
    if gzipped is not None:
        assert (response.getheader("Content-Encoding") == "gzip") is gzipped
        text = gzip.decompress(body) if gzipped else body
        assert b"cognito_user_import_jobs{" in text


@pytest.mark.slow
@pytest.mark.parametrize("form", ["twice", "list"])
def test_a_scrape_timeout_header_given_twice_sets_one_deadline(plain: Target, form: str) -> None:
    plain.model.faults.latency = 3.0
    try:
        connection = http.client.HTTPConnection("127.0.0.1", plain.port, timeout=30)
        connection.putrequest("GET", "/metrics")
        if form == "twice":
            connection.putheader("X-Prometheus-Scrape-Timeout-Seconds", "1")
            connection.putheader("X-Prometheus-Scrape-Timeout-Seconds", "1")
        else:
            connection.putheader("X-Prometheus-Scrape-Timeout-Seconds", "1, 1")
        connection.endheaders()
        started = time.monotonic()
        response = connection.getresponse()
        response.read()
        took = time.monotonic() - started
        connection.close()
    finally:
        plain.model.faults.latency = 0.0
    print(f"scrape timeout header {form}: answered {response.status} after {took:.2f} s")
    assert response.status == 200
    assert took < 1.0  # the 1 s Prometheus gave, less the 0.5 s offset, plus rendering
