"""The ASGI front hypercorn serves before the WSGI app.

It stamps each request's arrival (a scrape's budget starts then), applies the web config in
the event loop (rate limit, basic auth with bcrypt on a thread of its own, response headers),
and only then queues the request for the bounded pool of workers that run the app. A request
no worker could start before its deadline is answered 503 at the deadline instead of late.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypercorn.app_wrappers import WSGIWrapper
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Scope,
)

from exporter.web.auth import RequestLimiter
from exporter.web.routes import ARRIVED, Environ, StartResponse, WsgiApp
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)


class Front:
    """The ASGI app hypercorn serves: web config checks in the event loop, then the WSGI
    `app` on `workers`, started within the request's budget (`budget(scrape_timeout_header)`
    seconds from its arrival) or answered 503."""

    def __init__(
        self,
        app: WsgiApp,
        current: Callable[[], WebConfig],
        workers: ThreadPoolExecutor,
        budget: Callable[[str | None], float],
        max_body_bytes: int = 64 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._current = current
        self._workers = workers
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
            await _refuse(scope, send, 429, "Too Many Requests", [], web)
            return
        if web.basic_auth is not None and not await web.basic_auth.verify(
            headers.get("authorization")
        ):
            await _refuse(scope, send, 401, "Unauthorized", [("WWW-Authenticate", "Basic")], web)
            return
        deadline = arrived + self._budget(headers.get("x-prometheus-scrape-timeout-seconds"))
        app = functools.partial(_with_arrival, self._app, arrived, web.headers)
        wrapper = WSGIWrapper(app, self._max_body_bytes)
        loop = asyncio.get_running_loop()
        await wrapper(
            scope,
            receive,
            send,
            functools.partial(self._spawn_by, deadline, scope, send, web),
            functools.partial(_call_soon, loop),
        )

    async def _spawn_by(
        self,
        deadline: float,
        scope: HTTPScope,
        send: ASGISendCallable,
        web: WebConfig,
        func: Callable[..., None],
        *args: Any,
    ) -> None:
        """Run `func` on a worker; if none could start it before `deadline`, take it out of
        the queue and answer 503 now."""
        loop = asyncio.get_running_loop()
        started = asyncio.Event()
        claim = threading.Lock()
        state = {"started": False, "given_up": False}

        def run() -> None:
            with claim:
                if state["given_up"]:
                    return
                state["started"] = True
            loop.call_soon_threadsafe(started.set)
            func(*args)

        work = loop.run_in_executor(self._workers, run)
        try:
            await asyncio.wait_for(started.wait(), timeout=max(0.0, deadline - self._clock()))
        except TimeoutError:
            with claim:
                state["given_up"] = not state["started"]
            if state["given_up"]:
                log.warning(
                    "no worker was free before the request's deadline",
                    extra={"fields": {"path": scope.get("path", "")}},
                )
                await _refuse(scope, send, 503, "Service Unavailable", [], web, final=False)
                return
        await work


def _with_arrival(
    app: WsgiApp,
    arrived: float,
    headers: tuple[tuple[str, str], ...],
    environ: Environ,
    start_response: StartResponse,
) -> Iterable[bytes]:
    environ[ARRIVED] = arrived
    if not headers:
        return app(environ, start_response)

    def start_with_headers(
        status: str, response: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        present = {name.lower() for name, _ in response}
        extra = [(name, value) for name, value in headers if name.lower() not in present]
        return start_response(status, [*response, *extra], exc_info)

    return app(environ, start_with_headers)


def _call_soon(
    loop: asyncio.AbstractEventLoop, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any
) -> Any:
    """Run a coroutine function on the loop from a worker thread and wait for it."""
    return asyncio.run_coroutine_threadsafe(func(*args), loop).result()


def _header_map(scope: HTTPScope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


async def _refuse(
    scope: HTTPScope,
    send: ASGISendCallable,
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    web: WebConfig,
    final: bool = True,
) -> None:
    body = f"{reason}\n".encode()
    response = [
        ("content-type", "text/plain; charset=utf-8"),
        ("content-length", str(len(body))),
        *headers,
        *web.headers,
    ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [(name.lower().encode(), value.encode()) for name, value in response],
        "trailers": False,
    }
    await send(start)
    head = scope.get("method") == "HEAD"
    content: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": b"" if head else body,
        "more_body": not final,
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
