"""Serving the simulated service over HTTP on loopback, for real botocore to talk to; and
ticking its clock in the background, so jobs move while nobody asks."""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from exporter.demo.service import SimulatedCognito
from exporter.demo.wire import Reply


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops connections when a cold exporter opens its
    # whole pool at once, and each dropped SYN costs the client a one-second retransmit
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], model: SimulatedCognito) -> None:
        self.model = model
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _SimulatorHandler)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        """A client that hung up before its answer was written (its deadline passed) is not
        an error of the simulator's."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
            self.connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _SimulatorHandler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60.0

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name: value for name, value in self.headers.items()}
        reply = self.server.model.respond(self.headers.get("X-Amz-Target"), body, headers)
        if reply.drip > 0:
            self._drip(reply)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(reply.body)

    def _drip(self, reply: Reply) -> None:
        """The whole answer a byte at a time, for as long as the client keeps reading."""
        raw = (
            f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n\r\n"
        ).encode() + reply.body
        self.close_connection = True
        for index in range(len(raw)):
            try:
                self.wfile.write(raw[index : index + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(reply.drip)

    def log_message(self, format: str, *args: object) -> None:
        return


class SimulatorServer:
    """Serves a ``SimulatedCognito`` over HTTP; optionally ticks its clock in the background."""

    def __init__(
        self,
        model: SimulatedCognito,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tick_interval: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.tick_interval = tick_interval
        self.ssl_context = ssl_context
        self._httpd: SimulatorHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running")
        host, port = self._httpd.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{shown}:{port}"

    def start(self) -> str:
        if self._httpd is not None:
            return self.url
        self._stopping.clear()
        self._httpd = SimulatorHTTPServer((self.host, self.port), self.model)
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        serve = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._threads = [serve]
        if self.tick_interval is not None:
            self._threads.append(threading.Thread(target=self._tick, daemon=True))
        for thread in self._threads:
            thread.start()
        return self.url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []

    def _tick(self) -> None:
        interval = self.tick_interval or 1.0
        while not self._stopping.wait(interval):
            self.model.advance()

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
