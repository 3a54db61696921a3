"""Connections as the server keeps them: let go when the client closes, answered however long
they were kept alive, closed at the keep-alive timeout, and never holding a worker while a
client is slow to read its answer."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil
import pytest

from exporter.web.serve import ServerSettings
from tests.tools import wait_until
from tests.web_server import serving

BIG = b"x" * (16 * 1024 * 1024)
PROBES_MAY_END = threading.Event()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/probe":
        PROBES_MAY_END.wait(10)
    body = BIG if environ["PATH_INFO"] == "/big" else b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


@contextlib.contextmanager
def server(settings: ServerSettings, workers: int = 4) -> Iterator[int]:
    """The exporter's server (its settings, front and connections) before `app`."""
    with serving(app, settings, workers=workers) as served:
        yield served.port


def settings(**changes: Any) -> ServerSettings:
    return ServerSettings("127.0.0.1:0", **changes)


def served_connections(port: int) -> int:
    """Connections the server on `port` holds (this process's sockets on that local port,
    the listening one left out)."""
    return sum(
        1
        for connection in psutil.Process().net_connections(kind="tcp")
        if connection.laddr and connection.laddr.port == port and connection.raddr
    )


def open_sockets() -> int:
    """Sockets this process holds."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed since it was listed
            count += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
    return count


def test_connections_the_client_closed_are_let_go_at_once() -> None:
    with server(settings(keep_alive_timeout=60)) as port:
        before = open_sockets()

        def client() -> None:
            for _ in range(50):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/")
                assert connection.getresponse().read() == b"ok\n"
                connection.close()

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # 400 connections closed by their clients: the server holds none of them, long
        # before the 60 s keep-alive timeout
        wait_until(lambda: open_sockets() <= before, 5, "server sockets let go")


def test_a_connection_idle_longer_than_the_io_timeout_is_still_answered() -> None:
    with server(settings(io_timeout=0.5, keep_alive_timeout=30)) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"ok\n"
        time.sleep(1.5)  # the idle time is what is tested
        started = time.monotonic()
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"ok\n"
        assert time.monotonic() - started < 1
        connection.close()


def test_an_idle_connection_is_closed_at_the_keep_alive_timeout() -> None:
    with (
        server(settings(keep_alive_timeout=1)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as client,
    ):
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = time.monotonic()
        received = b""
        while not received.endswith(b"ok\n"):
            received += client.recv(4096)
        assert client.recv(4096) == b""  # the server's FIN
        assert 0.9 < time.monotonic() - answered < 3


def test_clients_that_never_read_hold_no_worker_and_are_dropped() -> None:
    with server(settings(io_timeout=1), workers=1) as port:
        readers = []
        for _ in range(3):
            reader = socket.create_connection(("127.0.0.1", port), timeout=10)
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            readers.append(reader)
        try:
            for reader in readers:
                assert reader.recv(1, socket.MSG_PEEK) == b"H"  # its answer is under way
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"ok\n"
            assert time.monotonic() - started < 0.5  # the one worker is free
            connection.close()
            # taking nothing of an answer for io_timeout (1 s) ends the connection: the
            # server holds none of the three any more, while the clients still do
            wait_until(lambda: served_connections(port) == 0, 5, "stalled connections ended")
        finally:
            for reader in readers:
                reader.close()


@pytest.mark.parametrize("path", ["/probe", "/prob%65", "/%70robe"])
def test_probes_in_flight_leave_metrics_its_workers(path: str) -> None:
    """However the path is spelt, a probe queues in the probes' lane."""
    PROBES_MAY_END.clear()
    with server(settings(), workers=2) as port:
        probes = []
        try:
            for _ in range(8):
                probe = socket.create_connection(("127.0.0.1", port), timeout=10)
                probe.sendall(f"GET {path}?target=x HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                probes.append(probe)
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", "/metrics")
            assert connection.getresponse().read() == b"ok\n"
            assert time.monotonic() - started < 0.5
            connection.close()
        finally:
            PROBES_MAY_END.set()
            for probe in probes:
                probe.close()


def test_answers_on_a_kept_alive_connection_are_not_held_back_by_nagle() -> None:
    """Without TCP_NODELAY an answer's body waits for the client's delayed ACK of its head:
    about 40 ms a request after the first on a connection."""
    with server(settings()) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        took = []
        for _ in range(20):
            started = time.monotonic()
            connection.request("GET", "/metrics")
            assert connection.getresponse().read() == b"ok\n"
            took.append(time.monotonic() - started)
        connection.close()
    assert statistics.median(took[1:]) < 0.02, took
