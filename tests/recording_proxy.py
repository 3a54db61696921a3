"""A loopback HTTP proxy in front of one exporter's /metrics that records, for every request,
the Accept header it came with and the Content-Type it was answered with: what a scraper
asked for and what the exporter gave it, as neither reports it."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FORWARDED_HEADERS = ("Accept", "Accept-Encoding", "X-Prometheus-Scrape-Timeout-Seconds")
RETURNED_HEADERS = ("Content-Type", "Content-Encoding")
FORWARD_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Exchange:
    accept: str
    content_type: str
    status: int


class RecordingProxy:
    """Requests to any path are forwarded to the exporter's /metrics and recorded by path."""

    def __init__(self, exporter_address: str) -> None:
        self.exporter_address = exporter_address
        self._exchanges: dict[str, list[Exchange]] = {}
        self._lock = threading.Lock()

    def record(self, path: str, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.setdefault(path, []).append(exchange)

    def exchanges(self, path: str) -> list[Exchange]:
        with self._lock:
            return list(self._exchanges.get(path, []))

    def forward(self, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        host, port = self.exporter_address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=FORWARD_TIMEOUT_SECONDS)
        try:
            connection.request("GET", "/metrics", headers=headers)
            response = connection.getresponse()
            body = response.read()
            returned = [
                (name, value)
                for name in RETURNED_HEADERS
                if (value := response.getheader(name)) is not None
            ]
            return response.status, returned, body
        finally:
            connection.close()


def handler_for(proxy: RecordingProxy) -> type[BaseHTTPRequestHandler]:
    class Forwarding(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked = {name: value for name in FORWARDED_HEADERS if (value := self.headers[name])}
            status, returned, body = proxy.forward(asked)
            answered = dict(returned)
            proxy.record(
                self.path,
                Exchange(asked.get("Accept", ""), answered.get("Content-Type", ""), status),
            )
            self.send_response(status)
            for name, value in returned:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the recording is the log."""

    return Forwarding


@contextmanager
def recording_proxy(exporter_address: str) -> Iterator[tuple[str, RecordingProxy]]:
    """The proxy's `host:port` and the proxy, serving until the block ends."""
    proxy = RecordingProxy(exporter_address)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(proxy))
    thread = threading.Thread(target=server.serve_forever, name="recording-proxy", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
