"""Running the WSGI app on hypercorn: bounded worker threads, timeouts, signals.

Connections are handled by asyncio, so idle or slow clients cost no worker thread; only a
complete request reaches the bounded pool that runs the app. SIGTERM and SIGINT stop the
server, SIGHUP asks for a reload.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from exporter.server import WsgiApp
from exporter.tls import TlsHypercornConfig
from exporter.webauth import protect
from exporter.webconfig import WebConfig

log = logging.getLogger("exporter.serving")


class ListenAddressError(ValueError):
    pass


@dataclass(frozen=True)
class ServerSettings:
    listen_address: str
    worker_threads: int = 16
    read_timeout: int = 10
    keep_alive_timeout: float = 75.0
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    shutdown_grace: float = 0.5


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[IPV6]:PORT`."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenAddressError(f"{address!r} is not HOST:PORT (for example :10209)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _bind(address: str) -> str:
    host, port = parse_listen_address(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(settings: ServerSettings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [_bind(settings.listen_address)]
    config.read_timeout = settings.read_timeout
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.h11_max_incomplete_size = settings.max_header_bytes
    config.wsgi_max_body_size = settings.max_body_bytes
    config.graceful_timeout = settings.shutdown_grace
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.ssl_handshake_timeout = settings.read_timeout
    config.h2_max_header_list_size = settings.max_header_bytes
    return config


def run(
    app: WsgiApp,
    settings: ServerSettings,
    on_reload: Callable[[], object],
    web_config: Callable[[], WebConfig] = WebConfig,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, behind the web config (TLS, basic auth, headers)."""
    config = TlsHypercornConfig.from_config(hypercorn_config(settings), web_config)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(
            _serve(protect(app, web_config), settings, on_reload, on_started, config)
        )
    finally:
        # Not asyncio.run(): it would wait for worker threads still inside a slow scrape.
        loop.close()


async def _serve(
    app: WsgiApp,
    settings: ServerSettings,
    on_reload: Callable[[], object],
    on_started: Callable[[], None] | None,
    config: HypercornConfig,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="http")
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    server = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait, mode="wsgi"))
    log.info("listening", extra={"fields": {"address": settings.listen_address}})
    if on_started is not None:
        on_started()
    await stop.wait()
    # a TLS client that never answers the close message would hold shutdown for 30 s
    await asyncio.wait({server}, timeout=settings.shutdown_grace + 0.3)
    log.info("stopped")
