"""The serving layer's limits against clients that stay just inside the simple ones: readers
that take their answers a byte at a time, clients that leave while their request waits, floods
of frames that ask nothing, pipelined requests that never finish arriving, header blocks sent
in one piece, a SIGTERM with HTTP/2 streams in flight and HTTP/2 connections left idle after
a reset. Each runs an in-process server on loopback with short timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import h2.errors
import h2.exceptions
import pytest
from hpack import Decoder
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame

from exporter.web.exchange import Answer, Request
from exporter.web.link import HeldBytes, Limits, Link, Serving
from exporter.web.serve import ServerSettings
from exporter.web.webconfig import WebConfig
from tests.test_web_attacks import H2Client, ok, pump, tls_web_config
from tests.tools import wait_until
from tests.web_server import serving

KIB = 1024
MIB = 1024 * KIB

WsgiApp = Callable[[dict[str, object], Callable[..., object]], list[bytes]]


def answering(size: int) -> WsgiApp:
    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x" * size]

    return app


def read_when_ready(client: H2Client, within: float) -> None:
    """Read what the server sent, if anything arrives within `within` seconds."""
    if client.sock.pending() or select.select([client.sock], [], [], within)[0]:
        client.read()


# --- answers taken too slowly -------------------------------------------------------------


def test_an_http2_stream_whose_reader_drips_its_window_is_reset(tmp_path: Path) -> None:
    web, ca = tls_web_config(tmp_path)
    limits = Limits(io_timeout=1.0)
    with serving(answering(MIB), web=lambda: web, limits=limits) as served:
        client = H2Client(served.port, ca, window=1)
        try:
            streams = client.request("/metrics", 4)
            started = drip = time.monotonic()
            while not set(streams) <= client.reset and time.monotonic() - started < 8:
                if time.monotonic() >= drip:
                    for stream_id in set(streams) - client.reset:
                        with contextlib.suppress(h2.exceptions.StreamClosedError):
                            client.h2.increment_flow_control_window(1, stream_id)
                            client.h2.increment_flow_control_window(1)
                    client.flush()
                    drip += 0.2
                read_when_ready(client, max(0.0, drip - time.monotonic()))
            took = time.monotonic() - started
            held = served.held.held
        finally:
            client.close()
    print(f"4 streams taking 1 byte every 0.2 s: reset after {took:.1f} s, {held} bytes held")
    assert set(streams) <= client.reset
    assert took < 4  # one I/O timeout of 1 s after the answers were made
    assert held == 0


@pytest.mark.slow
def test_an_http2_reader_taking_the_minimum_gets_its_whole_answer(tmp_path: Path) -> None:
    web, ca = tls_web_config(tmp_path)
    limits = Limits(io_timeout=1.0)
    with serving(answering(256 * KIB), web=lambda: web, limits=limits) as served:
        client = H2Client(served.port, ca, window=8 * KIB)
        try:
            (stream_id,) = client.request("/metrics", 1)
            started = window = time.monotonic()
            while stream_id not in client.ended | client.reset and time.monotonic() - started < 10:
                if time.monotonic() >= window:
                    # 80 KiB a second: just over the minimum of 64 KiB an I/O timeout
                    client.h2.increment_flow_control_window(8 * KIB, stream_id)
                    client.h2.increment_flow_control_window(8 * KIB)
                    client.flush()
                    window += 0.1
                read_when_ready(client, max(0.0, window - time.monotonic()))
            took = time.monotonic() - started
        finally:
            client.close()
    assert took > 2  # the pace held: the window was not opened faster
    assert client.statuses[stream_id] == b"200"
    assert stream_id in client.ended
    assert stream_id not in client.reset


# --- clients that leave while their request waits ------------------------------------------


def blocking_app(calls: list[str], release: threading.Event) -> WsgiApp:
    """Records each path it runs; the first request holds the only worker until released."""

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        calls.append(str(environ["PATH_INFO"]))
        if environ["PATH_INFO"] == "/first":
            release.wait(10)
        return ok(environ, start_response)

    return app


@pytest.mark.parametrize("leaving", ["reset", "tls close"])
def test_a_request_whose_client_leaves_while_it_waits_is_never_run(
    tmp_path: Path, leaving: str
) -> None:
    calls: list[str] = []
    release = threading.Event()
    web, ca = tls_web_config(tmp_path)
    context = ssl.create_default_context(cafile=ca)

    def connect(port: int) -> socket.socket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        if leaving == "tls close":
            return context.wrap_socket(raw, server_hostname="127.0.0.1")
        return raw

    def get(port: int, path: str) -> socket.socket:
        client = connect(port)
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return client

    served_web: Callable[[], WebConfig] = (lambda: web) if leaving == "tls close" else WebConfig
    arrived: list[str | None] = []

    def budget(header: str | None) -> float:
        arrived.append(header)  # the front takes a request's budget as it queues it
        return 30.0  # no deadline takes the request out of the queue within the test

    with serving(blocking_app(calls, release), web=served_web, workers=1, budget=budget) as served:
        first = get(served.port, "/first")
        wait_until(lambda: calls == ["/first"], 5, "the first request holding the worker")
        gone = get(served.port, "/gone")
        wait_until(lambda: len(arrived) == 2, 5, "the second request queued")
        if leaving == "reset":
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
        wait_until(lambda: len(served.connections) == 1, 2, "the connection left seen")
        release.set()
        assert first.recv(4096).startswith(b"HTTP/1.1 200 ")
        first.close()
        with get(served.port, "/after") as after:
            assert after.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert calls == ["/first", "/after"]


def test_reading_while_a_request_waits_is_bounded() -> None:
    calls: list[str] = []
    release = threading.Event()
    with (
        serving(blocking_app(calls, release), workers=1) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as client,
    ):
        client.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: calls == ["/first"], 5, "the first request running")
        client.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            for _ in range(10_000):
                sent += client.send(b"x" * (64 * KIB))
        release.set()
    print(f"bytes a waiting client could push: {sent / MIB:.1f} MiB")
    # the server stops reading past a request's worth; the rest waits in socket buffers
    assert sent < 64 * MIB


# --- HTTP/2 frames that ask nothing -------------------------------------------------------


def test_a_ping_flood_ends_the_connection_with_enhance_your_calm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.web.link")
    web, ca = tls_web_config(tmp_path)
    calls: list[str] = []
    release = threading.Event()
    with serving(blocking_app(calls, release), web=lambda: web) as served:
        client = H2Client(served.port, ca)
        try:
            client.request("/first", 1)
            wait_until(lambda: calls == ["/first"], 5, "a request in flight")
            for batch in range(3):
                for index in range(500):
                    client.h2.ping(struct.pack(">Q", batch * 500 + index))
                with contextlib.suppress(OSError):
                    client.flush()
                read_when_ready(client, 0.05)
            assert pump([client], lambda: client.closed, 5)
        finally:
            release.set()  # the answer in flight is made after the connection ended
            client.close()
    assert client.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert [record.getMessage() for record in caplog.records] == []


def test_a_flood_of_one_byte_window_updates_ends_the_connection(tmp_path: Path) -> None:
    web, ca = tls_web_config(tmp_path)
    with serving(answering(MIB), web=lambda: web) as served:
        client = H2Client(served.port, ca, window=0)
        try:
            (stream_id,) = client.request("/metrics", 1)
            assert pump([client], lambda: stream_id in client.statuses, 5)
            for _ in range(1500):
                client.h2.increment_flow_control_window(1, stream_id)
                client.h2.increment_flow_control_window(1)
            with contextlib.suppress(OSError):
                client.flush()
            assert pump([client], lambda: client.closed, 5)
        finally:
            client.close()
    assert client.goaway == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_requests_carrying_a_priority_are_not_counted_as_frames_that_ask_nothing(
    tmp_path: Path,
) -> None:
    web, ca = tls_web_config(tmp_path)
    limits = Limits(max_streams=1200)
    with serving(ok, web=lambda: web, limits=limits, workers=8) as served:
        client = H2Client(served.port, ca)
        try:
            headers = [
                (":method", "GET"),
                (":path", "/"),
                (":scheme", "https"),
                (":authority", "127.0.0.1"),
            ]
            streams = []
            for _ in range(1100):
                stream_id = client.h2.get_next_available_stream_id()
                client.h2.send_headers(stream_id, headers, end_stream=True, priority_weight=16)
                streams.append(stream_id)
                if len(streams) % 50 == 0:
                    client.flush()
                    assert pump([client], lambda: set(streams) <= client.ended, 10)
        finally:
            client.close()
    assert client.goaway is None
    assert sorted(set(client.statuses.values())) == [b"200"]


def test_a_few_pings_are_answered(tmp_path: Path) -> None:
    web, ca = tls_web_config(tmp_path)
    with serving(ok, web=lambda: web) as served:
        client = H2Client(served.port, ca)
        try:
            for index in range(50):
                client.h2.ping(struct.pack(">Q", index))
            (stream_id,) = client.request("/", 1)
            assert pump([client], lambda: stream_id in client.ended, 5)
        finally:
            client.close()
    assert client.statuses[stream_id] == b"200"
    assert client.goaway is None


# --- requests that arrive too slowly or too large ------------------------------------------


def test_a_pipelined_request_must_arrive_within_the_io_timeout() -> None:
    limits = Limits(io_timeout=1.0, keep_alive_timeout=30.0)
    with (
        serving(ok, limits=limits) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as client,
    ):
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
        started = time.monotonic()
        reply = b""
        with contextlib.suppress(TimeoutError):
            while chunk := client.recv(4096):
                reply += chunk
        took = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"HTTP/1.1 408 " in reply
    assert took < 4


HEADERS = [(f"x-filler-{index}", "v" * 1000) for index in range(20)]  # 20 KB in all


def test_a_large_header_block_in_one_piece_is_refused_over_http1() -> None:
    with (
        serving(ok) as served,
        socket.create_connection(("127.0.0.1", served.port), timeout=5) as client,
    ):
        head = "".join(f"{name}: {value}\r\n" for name, value in HEADERS)
        client.sendall(f"GET / HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        reply = client.recv(4096)
    assert reply.startswith(b"HTTP/1.1 431 ")


def test_a_large_header_block_is_refused_over_http2(tmp_path: Path) -> None:
    web, ca = tls_web_config(tmp_path)
    with serving(ok, web=lambda: web) as served:
        client = H2Client(served.port, ca)
        try:
            stream_id = client.h2.get_next_available_stream_id()
            headers = [
                (":method", "GET"),
                (":path", "/"),
                (":scheme", "https"),
                (":authority", "127.0.0.1"),
            ]
            client.h2.send_headers(stream_id, [*headers, *HEADERS], end_stream=True)
            client.flush()
            assert pump([client], lambda: stream_id in client.ended, 5)
        finally:
            client.close()
    assert client.statuses[stream_id] == b"431"


# --- HTTP/2 connections at their end -------------------------------------------------------


def test_sigterm_answers_the_http2_streams_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="exporter.web.link")
    web, ca = tls_web_config(tmp_path)
    calls: list[str] = []
    release = threading.Event()
    settings = ServerSettings("127.0.0.1:0", shutdown_grace=5.0)
    frames: list[Frame] = []
    with serving(blocking_app(calls, release), settings=settings, web=lambda: web) as served:
        client = H2Client(served.port, ca)
        (stream_id,) = client.request("/first", 1)
        wait_until(lambda: calls == ["/first"], 5, "the request running")
        # read as frames: h2 as a client takes nothing more once a GOAWAY has arrived
        reader = threading.Thread(target=read_frames, args=(client.sock, frames, release))
        reader.start()
    reader.join(10)
    client.close()
    goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
    answer = [frame for frame in frames if frame.stream_id == stream_id]
    heads = [frame for frame in answer if isinstance(frame, HeadersFrame)]
    assert goaways[0].error_code == h2.errors.ErrorCodes.NO_ERROR
    assert goaways[0].last_stream_id == stream_id
    assert frames.index(goaways[0]) < frames.index(heads[0])
    assert (b":status", b"200") in list(Decoder().decode(heads[0].data, raw=True))
    assert isinstance(answer[-1], DataFrame)
    assert "END_STREAM" in answer[-1].flags
    assert [record.getMessage() for record in caplog.records] == []


def read_frames(sock: ssl.SSLSocket, frames: list[Frame], release: threading.Event) -> None:
    """Every frame the server sends until it closes; `release` set once a GOAWAY arrived."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
            while len(data) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(data[:9]))
                if len(data) < 9 + length:
                    break
                frame.parse_body(memoryview(data[9 : 9 + length]))
                frames.append(frame)
                data = data[9 + length :]
                if isinstance(frame, GoAwayFrame):
                    release.set()  # the answer is made only once the GOAWAY was sent
    sock.close()  # as a client does once its streams are answered


def test_an_http2_connection_idle_after_its_last_stream_was_reset_is_closed(
    tmp_path: Path,
) -> None:
    web, ca = tls_web_config(tmp_path)
    limits = Limits(keep_alive_timeout=1.0)
    calls: list[str] = []
    release = threading.Event()
    with serving(blocking_app(calls, release), web=lambda: web, limits=limits) as served:
        client = H2Client(served.port, ca)
        try:
            (stream_id,) = client.request("/first", 1)
            wait_until(lambda: calls == ["/first"], 5, "the request running")
            client.h2.reset_stream(stream_id)
            client.flush()
            started = time.monotonic()
            closed = pump([client], lambda: client.closed, 5)
            took = time.monotonic() - started
        finally:
            release.set()
            client.close()
    assert closed
    assert took < 3  # the keep-alive timeout of 1 s
    assert client.goaway == h2.errors.ErrorCodes.NO_ERROR


# --- an HTTP/1.1 answer taken too slowly ------------------------------------------------------


class DrainedTransport(asyncio.Transport):
    """A transport whose socket takes what the test drains from it, pausing and resuming its
    protocol's writing as asyncio's own transports do (low mark a quarter of the high)."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.buffered = 0
        self.high = 64 * KIB
        self.paused = False
        self.aborted = False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = high or self.high

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffered += len(data)
        if not self.paused and self.buffered > self.high:
            self.paused = True
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def drain(self, size: int) -> None:
        self.buffered = max(0, self.buffered - size)
        if self.paused and self.buffered <= self.high // 4:
            self.paused = False
            self.protocol.resume_writing()

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        if not self.aborted:
            self.aborted = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def close(self) -> None:
        self.abort()


class NoSession:
    idle = True

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...

    def resume_writing(self) -> None: ...

    def closed(self) -> None: ...

    def stop(self) -> None: ...


class NoFront:
    async def answer(self, request: Request) -> Answer:
        return Answer(204)


def drained_write(limits: Limits, drain: int, every: float, size: int) -> tuple[bool, float]:
    """Write `size` bytes on a link whose client takes `drain` bytes every `every` seconds:
    whether the write was cut off, and when it ended."""

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        serving = Serving(NoFront(), limits, HeldBytes(limits.held_in_total))
        link = Link(serving, lambda link, peer, alpn: NoSession(), lambda link: None, loop)
        transport = DrainedTransport(link)
        link.connection_made(transport)
        started = loop.time()
        writing = loop.create_task(link.write(b"x" * size))
        while not writing.done() and loop.time() - started < 10:
            await asyncio.wait({writing}, timeout=every)
            transport.drain(drain)
        cut = isinstance(writing.exception(), ConnectionResetError) and transport.aborted
        return cut, loop.time() - started

    return asyncio.run(main())


def test_an_http1_answer_taken_under_the_minimum_rate_is_cut_off() -> None:
    # 20 KiB every 0.05 s resumes writing every 0.15 s (well within the I/O timeout) and
    # takes about 130 KiB of each 0.5 s window, under the minimum of 512 KiB
    limits = Limits(io_timeout=0.5, min_taken=512 * KIB)
    cut, took = drained_write(limits, drain=20 * KIB, every=0.05, size=4 * MIB)
    assert cut
    assert took < 1.5


def test_an_http1_answer_taken_at_the_minimum_rate_is_written_whole() -> None:
    limits = Limits(io_timeout=0.5, min_taken=64 * KIB)
    cut, took = drained_write(limits, drain=20 * KIB, every=0.05, size=512 * KIB)
    assert not cut
    assert took < 5
