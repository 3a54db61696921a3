"""The exporter's server (its front, connections and limits) serving a WSGI app in a thread of
its own, for tests of the web tier."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from exporter.web.connections import Connections
from exporter.web.front import Front
from exporter.web.link import HeldBytes, Limits, Serving
from exporter.web.routes import WsgiApp
from exporter.web.serve import ServerSettings, lanes, listen
from exporter.web.webconfig import WebConfig


@dataclass
class Served:
    port: int
    connections: Connections
    held: HeldBytes


@contextlib.contextmanager
def serving(
    app: WsgiApp,
    settings: ServerSettings | None = None,
    web: Callable[[], WebConfig] = WebConfig,
    workers: int = 4,
    cap: int = 1000,
    limits: Limits | None = None,
    budget: Callable[[str | None], float] = lambda header: 5.0,
) -> Iterator[Served]:
    """Serve `app` on a free loopback port until the block ends; the server must stop cleanly
    within its grace period."""
    settings = settings or ServerSettings("127.0.0.1:0")
    limits = limits or settings.limits()
    pools = [ThreadPoolExecutor(max_workers=workers), ThreadPoolExecutor(2), ThreadPoolExecutor(1)]
    front = Front(app, web, pools[0], budget, lanes(pools[1], pools[2]))
    listening = listen(settings.listen_address)
    held = HeldBytes(limits.held_in_total)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failures: list[BaseException] = []
    box: list[tuple[Connections, asyncio.Event]] = []

    def tls() -> ssl.SSLContext | None:
        return web().ssl_context

    async def main() -> None:
        stop = asyncio.Event()
        connections = Connections(Serving(front, limits, held), tls, cap)
        box.append((connections, stop))
        ready.set()
        await connections.serve([listening], stop.wait, settings.shutdown_grace)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as error:
            failures.append(error)
            ready.set()

    thread = threading.Thread(target=run, name="server", daemon=True)
    thread.start()
    ready.wait(10)
    connections, stop = box[0]
    try:
        yield Served(listening.getsockname()[1], connections, held)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        assert not thread.is_alive()
        loop.close()
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
    assert failures == []
