"""Serving on hypercorn: listen address, timeouts and limits, TLS that follows reloads,
signals. Connections are handled by asyncio, so idle or slow clients cost no worker thread;
the front (`exporter.web.front`) hands complete requests to a bounded pool of workers.
SIGTERM and SIGINT stop the server, SIGHUP asks for a reload.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hypercorn.config import Config as HypercornConfig

from exporter.web.connections import serve_connections
from exporter.web.front import Front
from exporter.web.routes import WsgiApp
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

_PORT = re.compile(r"[0-9]{1,5}")


class ListenAddressError(ValueError):
    pass


@dataclass(frozen=True)
class ServerSettings:
    listen_address: str
    worker_threads: int = 16
    io_timeout: float = 10.0  # a TLS handshake, or a client taking nothing of an answer
    keep_alive_timeout: float = 75.0
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    shutdown_grace: float = 0.5


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[IPV6]:PORT`."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ListenAddressError(f"{address!r} is not HOST:PORT (for example :10209)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _bind(address: str) -> str:
    host, port = parse_listen_address(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: ServerSettings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [_bind(settings.listen_address)]
    # No read timeout: an idle connection ends at the keep-alive timeout, a busy one at its
    # request's deadline (exporter.web.front).
    config.read_timeout = None
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.h11_max_incomplete_size = settings.max_header_bytes
    config.wsgi_max_body_size = settings.max_body_bytes
    config.graceful_timeout = settings.shutdown_grace
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.ssl_handshake_timeout = settings.io_timeout
    config.h2_max_header_list_size = settings.max_header_bytes
    return config


class FollowingSSLContext(ssl.SSLContext):
    """A server context that hands every new connection to the TLS context in force at that
    moment (the current web config's), so a reload changes certificates, client CAs,
    client_auth_type, versions, ciphers and ALPN for new connections, as the toolkit's
    re-reading of its file on every handshake does. Servers built on asyncio or trio
    (hypercorn) create connections with `wrap_bio()`, the one method followed.

    A listening socket cannot change protocol, so the runtime refuses a reload that turns
    TLS off; should `current` have no context all the same, the last one stays in use.
    """

    current: Callable[[], ssl.SSLContext | None]
    last: ssl.SSLContext

    @classmethod
    def following(
        cls, current: Callable[[], ssl.SSLContext | None], initial: ssl.SSLContext
    ) -> FollowingSSLContext:
        context = cls(ssl.PROTOCOL_TLS_SERVER)
        context.current = current
        context.last = initial
        return context

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        self.last = self.current() or self.last
        return self.last.wrap_bio(incoming, outgoing, server_side, server_hostname, session)


class TlsHypercornConfig(HypercornConfig):
    """Hypercorn settings serving TLS when there is a TLS context at start, and plain HTTP
    otherwise. Hypercorn asks for the context once, when it starts listening; the context it
    gets follows `current` for every new connection (`FollowingSSLContext`)."""

    def __init__(self, current: Callable[[], ssl.SSLContext | None]) -> None:
        super().__init__()
        self.current_context = current

    @classmethod
    def from_config(
        cls, base: HypercornConfig, current: Callable[[], ssl.SSLContext | None]
    ) -> TlsHypercornConfig:
        """A copy of `base` (every setting made on it) serving `current`'s TLS."""
        config = cls(current)
        config.__dict__.update(
            {key: value for key, value in vars(base).items() if key != "current_context"}
        )
        return config

    @property
    def ssl_enabled(self) -> bool:
        return self.current_context() is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        initial = self.current_context()
        if initial is None:
            return None
        return FollowingSSLContext.following(self.current_context, initial)


def run(
    app: WsgiApp,
    settings: ServerSettings,
    on_reload: Callable[[], object],
    budget: Callable[[str | None], float],
    web_config: Callable[[], WebConfig] = WebConfig,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, behind the web config (TLS, basic auth, headers)."""
    config = TlsHypercornConfig.from_config(
        hypercorn_config(settings), lambda: web_config().ssl_context
    )
    workers = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="http")
    probe_workers = ThreadPoolExecutor(
        max_workers=max(2, settings.worker_threads // 4), thread_name_prefix="probe"
    )
    front = Front(
        app, web_config, workers, budget, settings.max_body_bytes, probe_workers=probe_workers
    )
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_serve(front, settings, on_reload, on_started, config))
    finally:
        # Not asyncio.run(): it would wait for worker threads still inside a slow scrape.
        loop.close()
        workers.shutdown(wait=False, cancel_futures=True)
        probe_workers.shutdown(wait=False, cancel_futures=True)


async def _serve(
    front: Front,
    settings: ServerSettings,
    on_reload: Callable[[], object],
    on_started: Callable[[], None] | None,
    config: HypercornConfig,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_reload)

    def listening() -> None:
        log.info("listening", extra={"fields": {"address": settings.listen_address}})
        if on_started is not None:
            on_started()

    await serve_connections(front, config, stop.wait, settings.io_timeout, listening)
    log.info("stopped")
