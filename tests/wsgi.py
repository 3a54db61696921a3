"""Calling the exporter's WSGI app in-process, as a server would."""

from __future__ import annotations

import io
import time
from typing import Any

from exporter.web.routes import ExporterApp
from tests.exporter_process import Samples, samples


def call(
    app: ExporterApp,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> tuple[int, dict[str, str], bytes]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(b""),
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status: list[str] = []
    response_headers: dict[str, str] = {}

    def start_response(line: str, pairs: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(line)
        response_headers.update(pairs)

    body = b"".join(app(environ, start_response))
    return int(status[0].split()[0]), response_headers, body


def timed_scrape(app: ExporterApp) -> tuple[Samples, float]:
    """One `/metrics` answer, parsed, and the seconds it took."""
    started = time.monotonic()
    status, _, body = call(app, "/metrics")
    took = time.monotonic() - started
    assert status == 200
    return samples(body.decode()), took
