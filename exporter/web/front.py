"""The ASGI front hypercorn serves before the WSGI app.

It stamps each request's arrival (a scrape's budget starts then), applies the web config in
the event loop (rate limit, basic auth with bcrypt on a thread of its own, response headers),
and only then queues the request for the bounded pool of workers that run the app. A request
no worker could start before its deadline is answered 503 at the deadline instead of late.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Scope,
)

from exporter.web.auth import RequestLimiter
from exporter.web.routes import ARRIVED, Environ, WsgiApp
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)


class Front:
    """The ASGI app the server serves: web config checks in the event loop, then the WSGI
    `app` on `workers`, started within the request's budget (`budget(scrape_timeout_header)`
    seconds from its arrival) or answered 503. The app's whole answer is taken on the worker
    and sent from the event loop, so a client slow to read it holds no worker."""

    def __init__(
        self,
        app: WsgiApp,
        current: Callable[[], WebConfig],
        workers: ThreadPoolExecutor,
        budget: Callable[[str | None], float],
        max_body_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
        probe_workers: ThreadPoolExecutor | None = None,
    ) -> None:
        self._app = app
        self._current = current
        self._workers = workers
        self._probe_workers = probe_workers or workers
        self._budget = budget
        self._max_body_bytes = max_body_bytes
        self._clock = clock
        self._limiter = RequestLimiter(clock)

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1003, "reason": None})
            return
        arrived = self._clock()
        web = self._current()
        headers = _header_map(scope)
        if web.rate_limit is not None and not self._limiter.allow(web.rate_limit):
            await _answer(scope, send, _text(429, "Too Many Requests", web))
            return
        if web.basic_auth is not None and not await web.basic_auth.verify(
            headers.get("authorization")
        ):
            answer = _text(401, "Unauthorized", web, [("WWW-Authenticate", "Basic")])
            await _answer(scope, send, answer)
            return
        deadline = arrived + self._budget(headers.get("x-prometheus-scrape-timeout-seconds"))
        try:
            body = await asyncio.wait_for(
                _request_body(receive, self._max_body_bytes),
                timeout=max(0.0, deadline - self._clock()),
            )
        except TimeoutError:
            await _answer(scope, send, _text(408, "Request Timeout", web))
            return
        if body is None:
            await _answer(scope, send, _text(413, "Content Too Large", web))
            return
        environ = wsgi_environ(scope, body)
        environ[ARRIVED] = arrived
        # probes queue for workers of their own: a flood of them leaves /metrics its workers
        workers = self._probe_workers if scope["path"] == "/probe" else self._workers
        answered = await self._run_by(workers, deadline, environ, web.headers)
        if answered is None:
            log.warning(
                "no worker was free before the request's deadline",
                extra={"fields": {"path": scope.get("path", "")}},
            )
            answered = _text(503, "Service Unavailable", web)
        await _answer(scope, send, answered)

    async def _run_by(
        self,
        workers: ThreadPoolExecutor,
        deadline: float,
        environ: Environ,
        headers: tuple[tuple[str, str], ...],
    ) -> Answer | None:
        """The app's answer to `environ`, run on a worker; None if no worker could start it
        before `deadline` (it is then taken out of the queue)."""
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        claim = threading.Lock()
        state = {"started": False, "given_up": False}

        def run() -> Answer | None:
            with claim:
                if state["given_up"]:
                    return None
                state["started"] = True
            loop.call_soon_threadsafe(started.set)
            return _call_app(self._app, environ, headers)

        work = loop.run_in_executor(workers, run)
        try:
            await asyncio.wait_for(started.wait(), timeout=max(0.0, deadline - self._clock()))
        except TimeoutError:
            with claim:
                state["given_up"] = not state["started"]
            if state["given_up"]:
                return None
        return await work


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _call_app(app: WsgiApp, environ: Environ, extra: tuple[tuple[str, str], ...]) -> Answer:
    """The WSGI app's whole answer, with the web config's `extra` headers where the app set
    none of that name. An app that raises is answered 500 and logged in one line."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, response: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        started[:] = [(status, list(response))]
        return lambda data: None

    try:
        chunks = app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        status, response = started[0]
        code = int(status.split(" ", 1)[0])
    except Exception as error:  # one failed request; the server keeps going
        log.error(
            "request failed",
            extra={"fields": {"path": environ.get("PATH_INFO", ""), "error": type(error).__name__}},
        )
        return Answer(500, [("Content-Type", "text/plain; charset=utf-8")], b"internal error\n")
    present = {name.lower() for name, _ in response}
    response.extend((name, value) for name, value in extra if name.lower() not in present)
    return Answer(code, response, body)


def wsgi_environ(scope: HTTPScope, body: bytes) -> Environ:
    """The WSGI environ (PEP 3333) of an ASGI HTTP request."""
    server = scope.get("server") or ("localhost", 80)
    environ: Environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        key = name if name in ("CONTENT_LENGTH", "CONTENT_TYPE") else f"HTTP_{name}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


async def _request_body(receive: ASGIReceiveCallable, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than `limit` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return bytes(body)
        body.extend(message.get("body", b""))
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _header_map(scope: HTTPScope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _text(
    status: int, reason: str, web: WebConfig, headers: list[tuple[str, str]] | None = None
) -> Answer:
    body = f"{reason}\n".encode()
    response = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *(headers or []),
        *web.headers,
    ]
    return Answer(status, response, body)


async def _answer(scope: HTTPScope, send: ASGISendCallable, answer: Answer) -> None:
    present = {name.lower() for name, _ in answer.headers}
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers
    ]
    if "content-length" not in present and scope.get("method") != "HEAD":
        headers.append((b"content-length", str(len(answer.body)).encode()))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": answer.status,
        "headers": headers,
        "trailers": False,
    }
    await send(start)
    content: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": b"" if scope.get("method") == "HEAD" else answer.body,
        "more_body": False,
    }
    await send(content)


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
