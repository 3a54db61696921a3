"""Listening and serving each connection with hypercorn's protocol code (HTTP/1.1 over h11,
HTTP/2 over h2), on terms a scrape target needs.

hypercorn's own asyncio connection keeps a connection its client has closed until the
keep-alive timer fires (the timer task outlives the read loop), so a client opening a
connection per request leaves one socket in CLOSE-WAIT per request for that long; it reads
with one timeout for idle and busy connections alike, so a connection kept alive longer than
that timeout stops being read and the next request on it hangs; and it waits for a client to
take its answer for as long as the client likes. Here the timer ends with the read loop, an
idle connection is closed (by hypercorn's keep-alive timer) rather than left unread, a busy
one is bounded by the request's own deadline (`exporter.web.front`), and an answer the client
takes nothing of for `write_timeout` seconds ends the connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, Event, RawData
from hypercorn.typing import ASGIFramework


class Connection(TCPServer):
    """One client connection."""

    write_timeout: float = 10.0

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        async with self.send_lock:
            try:
                self.writer.write(event.data)
                await asyncio.wait_for(self.writer.drain(), self.write_timeout)
            except TimeoutError:
                self.writer.transport.abort()
                await self.protocol.handle(Closed())
            except (ConnectionError, RuntimeError):
                await self.protocol.handle(Closed())

    async def _read_data(self) -> None:
        await super()._read_data()
        await self.idle_task.stop()


async def serve_connections(
    app: ASGIFramework,
    config: HypercornConfig,
    stop: Callable[[], Awaitable[object]],
    write_timeout: float,
    on_listening: Callable[[], None] = lambda: None,
) -> None:
    """Listen on `config.bind` (an OSError if it cannot) and serve `app` until `stop()`
    returns; then stop listening and give open connections `config.graceful_timeout`
    seconds to finish."""
    loop = asyncio.get_running_loop()
    wrapped = ASGIWrapper(app)
    context = WorkerContext(None)
    connections: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            connections.add(task)
            task.add_done_callback(connections.discard)
        connection = Connection(wrapped, loop, config, context, {}, reader, writer)
        connection.write_timeout = write_timeout
        await connection

    sockets = config.create_sockets()
    tls: ssl.SSLContext | None = config.create_ssl_context() if config.ssl_enabled else None
    servers = []
    try:
        for sock in sockets.secure_sockets:
            servers.append(
                await asyncio.start_server(
                    on_connection,
                    sock=sock,
                    backlog=config.backlog,
                    ssl=tls,
                    ssl_handshake_timeout=config.ssl_handshake_timeout,
                )
            )
        for sock in sockets.insecure_sockets:
            servers.append(
                await asyncio.start_server(on_connection, sock=sock, backlog=config.backlog)
            )
        on_listening()
        await stop()
    finally:
        await context.terminated.set()
        for server in servers:
            server.close()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
        if connections:
            _, pending = await asyncio.wait(set(connections), timeout=config.graceful_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=0.3)
