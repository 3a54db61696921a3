"""Listening: accepting connections up to a cap, TLS with the context in force at each
connection (HTTP/2 only when the client chose it by ALPN; a plain port speaks HTTP/1.1 only),
and a stop that lets the requests in flight finish within a grace period.

The cap keeps descriptors for the rest of the process (AWS connections, history files): at the
cap, the connection idle the longest is closed to make room for a new one, and a new one is
refused only when none is idle. Running out of descriptors all the same pauses accepting until
a connection closes, rather than retrying in a loop. Either is logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable

from exporter.web.http1 import Http1Session
from exporter.web.http2 import Http2Session
from exporter.web.link import Link, Peer, Serving, Session

log = logging.getLogger(__name__)

_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
# the client gave up between its handshake and the accept, or a signal came
_CLIENT_GONE = frozenset((errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR))
_RESOURCE_RETRY = 1.0


def open_session(link: Link, peer: Peer, alpn: str | None) -> Session:
    if alpn == "h2":
        return Http2Session(link, link.serving, peer)
    return Http1Session(link, link.serving, peer)


class Connections:
    """The server's connections, at most `cap` of them."""

    def __init__(
        self,
        serving: Serving,
        tls: Callable[[], ssl.SSLContext | None],
        cap: int,
    ) -> None:
        self._serving = serving
        self._tls = tls
        self._last_tls: ssl.SSLContext | None = None
        self._cap = cap
        # each connection, with the socket it was accepted on and its TLS handshake
        self._links: dict[Link, tuple[socket.socket, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()
        self._told_full = False
        self._told_failing = False

    def __len__(self) -> int:
        return len(self._links)

    async def serve(
        self,
        listening: list[socket.socket],
        stop: Callable[[], Awaitable[object]],
        grace: float,
    ) -> None:
        """Accept on `listening` until `stop()` returns; then close them, let the requests in
        flight finish for `grace` seconds and close what remains."""
        loop = asyncio.get_running_loop()
        accepting = [loop.create_task(self._accept(sock)) for sock in listening]
        try:
            await stop()
        finally:
            for task in accepting:
                task.cancel()
            await asyncio.gather(*accepting, return_exceptions=True)
            for sock in listening:
                sock.close()
            await self._drain(grace)

    async def _drain(self, grace: float) -> None:
        for link in list(self._links):
            link.stop()
        await self._wait_until_empty(grace)
        work = [task for link in self._links for task in link.work]
        for link in list(self._links):
            self._end(link)
        if work:  # cancelled: each ends at its next step
            await asyncio.wait(work, timeout=0.3)

    async def _wait_until_empty(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while self._links and loop.time() < until:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), until - loop.time())
            except TimeoutError:
                return

    async def _accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        listening.setblocking(False)
        while True:
            try:
                sock, _ = await loop.sock_accept(listening)
            except OSError as error:
                if error.errno in _CLIENT_GONE:
                    continue
                if error.errno in _OUT_OF_RESOURCES:
                    self._tell_full("out of file descriptors")
                else:
                    self._tell_failing(error)
                if not self._evict_idle():
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), _RESOURCE_RETRY)
                continue
            if len(self._links) >= self._cap:
                self._tell_full("at the connection cap")
                if not self._evict_idle():
                    sock.close()
                    continue
            self._start(sock)
            # sock_accept does not yield while connections wait: let the new ones be read
            await asyncio.sleep(0)

    def _start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        # answers go out as written: Nagle's algorithm would hold a request's body (or an
        # answer's last bytes) until the peer's delayed ACK, 40 ms later, as Go never does
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(self._serving, open_session, self._forget, loop)
        context = self._tls() or self._last_tls
        self._last_tls = context
        self._links[link] = (sock, loop.create_task(self._connect(link, sock, context)))

    async def _connect(
        self, link: Link, sock: socket.socket, context: ssl.SSLContext | None
    ) -> None:
        loop = asyncio.get_running_loop()
        peer = _peer(sock)  # asyncio closes the socket when the handshake fails
        try:
            await loop.connect_accepted_socket(
                lambda: link,
                sock,
                ssl=context,
                ssl_handshake_timeout=self._serving.limits.io_timeout if context else None,
            )
        except (OSError, TimeoutError, asyncio.CancelledError) as error:
            # a failed or abandoned handshake: nothing was asked; why a TLS client was turned
            # away (no certificate, another CA, no common version) is told at debug, since
            # anyone can cause such lines
            if isinstance(error, ssl.SSLError):
                log.debug(
                    "TLS handshake failed",
                    extra={"fields": {"peer": peer, "reason": error.reason or str(error)}},
                )
            sock.close()
            self._forget(link)

    def _forget(self, link: Link) -> None:
        if self._links.pop(link, None) is not None:
            self._changed.set()

    def _evict_idle(self) -> bool:
        """Close the connection idle the longest; False if none is idle."""
        idle = [link for link in self._links if link.idle and not link.closing]
        if not idle:
            return False
        self._end(min(idle, key=lambda link: link.last_active))
        return True

    def _end(self, link: Link) -> None:
        sock, handshake = self._links.pop(link)
        if handshake.done():
            link.abandon()
        else:
            handshake.cancel()  # it may not have started: the socket is closed here
            sock.close()
        self._changed.set()

    def _tell_failing(self, error: OSError) -> None:
        if not self._told_failing:
            self._told_failing = True
            log.error("accepting connections failed", extra={"fields": {"error": error.strerror}})

    def _tell_full(self, reason: str) -> None:
        if self._told_full:
            return
        self._told_full = True
        log.warning(
            "too many connections: the idle ones are closed to make room for new ones",
            extra={"fields": {"reason": reason, "cap": self._cap}},
        )


def _peer(sock: socket.socket) -> str:
    try:
        host, port, *_ = sock.getpeername()
    except (OSError, ValueError):
        return ""
    return f"{host}:{port}"
