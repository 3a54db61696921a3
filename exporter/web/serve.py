"""Serving: listen address, timeouts and limits, descriptors, TLS that follows reloads,
signals. Connections are handled by asyncio (`exporter.web.connections`), so idle or slow
clients cost no worker thread; the front (`exporter.web.front`) hands complete requests to
bounded pools of workers. SIGTERM and SIGINT stop the server, SIGHUP asks for a reload.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from exporter.web.connections import Connections
from exporter.web.front import Front
from exporter.web.link import HeldBytes, Limits, Serving
from exporter.web.routes import ANSWERED_AT_ONCE, RELOAD_PATH, WsgiApp
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

_PORT = re.compile(r"[0-9]{1,5}")
# An exporter has a few clients (Prometheus servers, probes, a browser); an idle TLS
# connection holds about 280 KiB of OpenSSL's and asyncio's buffers, so 512 of them stay
# within the 256 MiB the Kubernetes kit and the chart give the container.
MAX_CONNECTIONS = 512
BACKLOG = 1024  # the kernel caps it at net.core.somaxconn


class ListenAddressError(ValueError):
    pass


@dataclass(frozen=True)
class ServerSettings:
    listen_address: str
    worker_threads: int = 16
    io_timeout: float = 10.0  # a TLS handshake, a request arriving, a client taking nothing
    keep_alive_timeout: float = 75.0
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    shutdown_grace: float = 0.5

    def limits(self) -> Limits:
        return Limits(
            io_timeout=self.io_timeout,
            keep_alive_timeout=self.keep_alive_timeout,
            max_header_bytes=self.max_header_bytes,
            max_body_bytes=self.max_body_bytes,
        )


ALL_INTERFACES = ("0.0.0.0", "::")


def parse_listen_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[IPV6]:PORT`."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ListenAddressError(f"{address!r} is not HOST:PORT (for example :10209)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one (as Go does since 1.19); the number
    of descriptors the process may then hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS * 2
    if hard != resource.RLIM_INFINITY and soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft
    return hard if hard != resource.RLIM_INFINITY else MAX_CONNECTIONS * 2


def connection_cap(descriptors: int) -> int:
    """Client connections allowed: half the descriptors, the other half kept for AWS
    connections, history files and the rest of the process."""
    return max(8, min(descriptors // 2, MAX_CONNECTIONS))


def listen(address: str) -> socket.socket:
    """A socket listening on `address` (an OSError if it cannot). All interfaces (`:PORT`,
    `0.0.0.0` or `::`) means IPv4 and IPv6 alike where the host has IPv6, as in Go."""
    host, port = parse_listen_address(address)
    if host in ALL_INTERFACES and socket.has_dualstack_ipv6():
        try:
            return _listening(socket.AF_INET6, "::", port)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise
            # IPv6 switched off in this network namespace: IPv4 alone, as below
    return _listening(socket.AF_INET6 if ":" in host else socket.AF_INET, host, port)


def _listening(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def lanes(probe_workers: Executor, reload_worker: Executor) -> dict[str, Executor | None]:
    """Where each path's requests run: health and readiness in the event loop, a reload on a
    worker of its own, probes on theirs (a flood of them leaves /metrics its workers)."""
    return {
        **dict.fromkeys(ANSWERED_AT_ONCE, None),
        RELOAD_PATH: reload_worker,
        "/probe": probe_workers,
    }


def run(
    app: WsgiApp,
    settings: ServerSettings,
    on_reload: Callable[[], object],
    budget: Callable[[str | None], float],
    web_config: Callable[[], WebConfig] = WebConfig,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, behind the web config (TLS, basic auth, headers)."""
    cap = connection_cap(raise_descriptor_limit())
    workers = ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="http")
    probe_workers = ThreadPoolExecutor(
        max_workers=max(2, settings.worker_threads // 4), thread_name_prefix="probe"
    )
    reload_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reload")
    front = Front(app, web_config, workers, budget, lanes(probe_workers, reload_worker))
    listening = listen(settings.listen_address)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(
            _serve(
                front,
                settings,
                on_reload,
                on_started,
                listening,
                cap,
                lambda: web_config().ssl_context,
            )
        )
    finally:
        # Not asyncio.run(): it would wait for worker threads still inside a slow scrape.
        loop.close()
        listening.close()
        for pool in (workers, probe_workers, reload_worker):
            pool.shutdown(wait=False, cancel_futures=True)


async def _serve(
    front: Front,
    settings: ServerSettings,
    on_reload: Callable[[], object],
    on_started: Callable[[], None] | None,
    listening: socket.socket,
    cap: int,
    tls: Callable[[], ssl.SSLContext | None],
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    limits = settings.limits()
    connections = Connections(Serving(front, limits, HeldBytes(limits.held_in_total)), tls, cap)
    log.info("listening", extra={"fields": {"address": settings.listen_address}})
    if on_started is not None:
        on_started()
    await connections.serve([listening], stop.wait, settings.shutdown_grace)
    log.info("stopped")
