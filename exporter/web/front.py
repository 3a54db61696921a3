"""The front every request passes before the WSGI app, whatever protocol carried it.

It stamps the request's arrival and computes its deadline once (a scrape's budget starts
then), checks the request's form, applies the web config in the event loop (rate limit, basic
auth with bcrypt on a thread of its own, response headers), and then runs the app in the lane
of its path: health and readiness at once in the event loop, a reload on a worker of its own,
probes and the rest on bounded pools of workers. A request no worker could start before its
deadline is answered 503 at the deadline; one whose client went away (the task awaiting it is
cancelled) is taken out of the queue unstarted.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any
from urllib.parse import unquote_to_bytes

from exporter.web.auth import RequestLimiter, Verdict
from exporter.web.exchange import Answer, Request, Target, accepts_gzip, parse_target, text_answer
from exporter.web.routes import ARRIVED, DEADLINE, Environ, WsgiApp
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_HEADER = "x-prometheus-scrape-timeout-seconds"


class Front:
    """Answers requests with the WSGI `app`: in the event loop for paths whose lane is None,
    else on the lane's workers (`default_workers` for paths not in `lanes`), started within
    the request's budget (`budget(scrape_timeout_header)` seconds from its arrival) or
    answered 503. The app's whole answer is taken on the worker and handed back to the event
    loop, so a client slow to read it holds no worker."""

    def __init__(
        self,
        app: WsgiApp,
        current: Callable[[], WebConfig],
        default_workers: Executor,
        budget: Callable[[str | None], float],
        lanes: Mapping[str, Executor | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._current = current
        self._default_workers = default_workers
        self._lanes = dict(lanes or {})
        self._budget = budget
        self._clock = clock
        self._limiter = RequestLimiter(clock)

    async def answer(self, request: Request) -> Answer:
        arrived = self._clock()
        web = self._current()
        answered = await self._answer(request, web, arrived)
        present = {name.lower() for name, _ in answered.headers}
        extra = [(name, value) for name, value in web.headers if name.lower() not in present]
        if not extra:
            return answered
        return Answer(answered.status, [*answered.headers, *extra], answered.body)

    async def _answer(self, request: Request, web: WebConfig, arrived: float) -> Answer:
        target = parse_target(request)
        if isinstance(target, Answer):
            return target
        if web.rate_limit is not None and not self._limiter.allow(web.rate_limit):
            return text_answer(429, "Too Many Requests")
        if web.basic_auth is not None:
            verdict = await web.basic_auth.verify(request.value("authorization"))
            if verdict is Verdict.BUSY:
                return text_answer(
                    503,
                    "Service Unavailable: too many password checks waiting",
                    [("Retry-After", "1")],
                )
            if verdict is not Verdict.GRANTED:
                return text_answer(401, "Unauthorized", [("WWW-Authenticate", "Basic")])
        gzip = accepts_gzip(request.value("accept-encoding"))
        if gzip is None:
            return text_answer(406, "Not Acceptable: neither gzip nor identity is accepted")
        deadline = arrived + self._budget(request.value(SCRAPE_TIMEOUT_HEADER))
        environ = wsgi_environ(request, target, gzip)
        environ[ARRIVED] = arrived
        environ[DEADLINE] = deadline
        # the path the app routes by (decoded), so `/prob%65` queues where `/probe` does
        lane = self._lanes.get(environ["PATH_INFO"], self._default_workers)
        if lane is None:
            return call_app(self._app, environ)
        answered = await self._run_by(lane, deadline, environ)
        if answered is None:
            log.warning(
                "no worker was free before the request's deadline",
                extra={"fields": {"path": target.path}},
            )
            return text_answer(503, "Service Unavailable")
        return answered

    async def _run_by(self, workers: Executor, deadline: float, environ: Environ) -> Answer | None:
        """The app's answer to `environ`, run on one of `workers`; None if none could start it
        before `deadline` (it is then taken out of the queue, as it is when the caller is
        cancelled)."""
        queued = workers.submit(call_app, self._app, environ)
        waiting = asyncio.wrap_future(queued)
        try:
            done, _ = await asyncio.wait({waiting}, timeout=max(0.0, deadline - self._clock()))
            if not done and queued.cancel():
                return None
            return await waiting
        except asyncio.CancelledError:
            queued.cancel()
            raise


def call_app(app: WsgiApp, environ: Environ) -> Answer:
    """The WSGI app's whole answer. An app that raises is answered 500 and logged in one
    line."""
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
        return text_answer(500, "internal error")
    return Answer(code, response, body)


def wsgi_environ(request: Request, target: Target, gzip: bool) -> Environ:
    """The WSGI environ (PEP 3333) of `request`. Accept-Encoding is replaced by the outcome
    of its negotiation, so the app sees `gzip` or nothing."""
    server = request.server or ("localhost", 80)
    environ: Environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(target.path).decode("latin-1"),
        "QUERY_STRING": target.query,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": request.scheme,
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if request.client is not None:
        environ["REMOTE_ADDR"] = request.client[0]
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        key = key if key in ("CONTENT_LENGTH", "CONTENT_TYPE") else f"HTTP_{key}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    environ.pop("HTTP_ACCEPT_ENCODING", None)
    if gzip:
        environ["HTTP_ACCEPT_ENCODING"] = "gzip"
    return environ
