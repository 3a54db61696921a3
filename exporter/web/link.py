"""One client connection as asyncio hands it over: the transport, its write pressure and
timeouts, the bytes of answers it holds, and the HTTP session (HTTP/2 when the client chose
`h2` by ALPN, HTTP/1.1 otherwise) that reads it.

A client that takes less of an answer than a minimum (`min_taken`, or what remained of the
answer) in each I/O timeout is cut off, as is one that takes nothing of it for that long; every
byte of an answer waiting to be sent is counted against a bound per connection and a
bound for the whole server: an answer over either is replaced by a short 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from exporter.web.exchange import Answer, Request

log = logging.getLogger(__name__)

WRITE_CHUNK = 64 * 1024
# Protocol frames (pings, settings acks, resets) a client asks for and does not read: past
# this, it is cut off rather than buffered for.
MAX_UNREAD = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    io_timeout: float = 10.0  # a TLS handshake, a request arriving, a client taking nothing
    keep_alive_timeout: float = 75.0
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    max_streams: int = 32  # concurrent HTTP/2 streams on one connection
    # bytes of an answer a client must take in each I/O timeout (or what remained of it): a
    # client dripping a byte at a time would otherwise hold its answer's bytes for hours
    min_taken: int = 64 * 1024
    held_per_connection: int = 32 * 1024 * 1024  # bytes of answers not yet sent
    held_in_total: int = 96 * 1024 * 1024


class Answerer(Protocol):
    def answer(self, request: Request) -> Awaitable[Answer]: ...


class HeldBytes:
    """Bytes of answers the server holds for its clients, bounded in total."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


@dataclass(frozen=True)
class Serving:
    """What every connection of a server shares: the front that answers, the limits, and
    the count of answer bytes held."""

    front: Answerer
    limits: Limits
    held: HeldBytes


@dataclass(frozen=True)
class Peer:
    scheme: str
    client: tuple[str, int] | None
    server: tuple[str, int] | None


class Session(Protocol):
    @property
    def idle(self) -> bool: ...

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...

    def resume_writing(self) -> None: ...

    def closed(self) -> None: ...

    def stop(self) -> None: ...


class Link(asyncio.Protocol):
    def __init__(
        self,
        serving: Serving,
        open_session: Callable[[Link, Peer, str | None], Session],
        on_closed: Callable[[Link], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.loop = loop
        self.serving = serving
        self._open_session = open_session
        self.last_active = loop.time()
        self.closing = False
        self._on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self._session: Session | None = None
        self._tls = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._stalled: asyncio.TimerHandle | None = None
        self._closing_limit: asyncio.TimerHandle | None = None
        self._held = 0
        self._written = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle(self) -> bool:
        """Nothing asked of the server: handshaking, or between requests."""
        return self._session is None or self._session.idle

    @property
    def work(self) -> list[asyncio.Task[None]]:
        """The answers under way."""
        return list(self._tasks)

    @property
    def writable(self) -> bool:
        return self._writable.is_set() and not self.closing

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=WRITE_CHUNK)
        tls = transport.get_extra_info("ssl_object")
        self._tls = tls is not None
        peer = Peer(
            "https" if tls is not None else "http",
            _address(transport.get_extra_info("peername")),
            _address(transport.get_extra_info("sockname")),
        )
        alpn = tls.selected_alpn_protocol() if tls is not None else None
        self._session = self._open_session(self, peer, alpn)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        if self._session is not None and not self.closing:
            try:
                self._session.data_received(data)
            except Exception as error:  # a bug on one connection ends it alone, in one line
                _log_once(error)
                self.abort()

    def eof_received(self) -> bool:
        if self._session is not None and not self.closing:
            try:
                self._session.eof_received()
            except Exception as error:
                _log_once(error)
                self.abort()
        # keep writing: a client that half-closed still gets its answer (TLS cannot)
        return not self._tls

    def pause_writing(self) -> None:
        self._writable.clear()
        self._stalled = self.loop.call_later(self.serving.limits.io_timeout, self.abort)

    def resume_writing(self) -> None:
        self.last_active = self.loop.time()
        if self._stalled is not None:
            self._stalled.cancel()
        self._writable.set()
        if self._session is not None and not self.closing:
            self._session.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        for timer in (self._stalled, self._closing_limit):
            if timer is not None:
                timer.cancel()
        self._writable.set()
        if self._session is not None:
            self._session.closed()
        for task in self._tasks:
            task.cancel()
        self._on_closed(self)

    # --- for the sessions ---

    async def write(self, data: bytes) -> None:
        """Write `data` as fast as the client takes it (ConnectionResetError once closed, or
        once the client took less than the minimum in an I/O timeout)."""
        limits = self.serving.limits
        end = self._written + len(data)
        mark, due = self._taken(), self.loop.time() + limits.io_timeout
        for offset in range(0, len(data), WRITE_CHUNK):
            if self.closing or self._transport is None:
                raise ConnectionResetError("the connection is closed")
            chunk = data[offset : offset + WRITE_CHUNK]
            self._transport.write(chunk)
            self._written += len(chunk)
            while not self._writable.is_set():
                with contextlib.suppress(asyncio.TimeoutError):  # not TimeoutError on 3.10
                    await asyncio.wait_for(self._writable.wait(), max(due - self.loop.time(), 0.0))
                if self._writable.is_set():
                    break
                taken = self._taken()
                if taken - mark < min(limits.min_taken, end - mark):
                    self.abort()
                    raise ConnectionResetError("the client takes its answer too slowly")
                mark, due = taken, self.loop.time() + limits.io_timeout
        if self.closing:
            raise ConnectionResetError("the connection is closed")

    def _taken(self) -> int:
        """Bytes written that left the server's own buffer for the socket's."""
        if self._transport is None:
            return self._written
        return self._written - self._transport.get_write_buffer_size()

    def write_now(self, data: bytes) -> None:
        """Write `data` (small: protocol frames) without waiting for the client."""
        if data and not self.closing and self._transport is not None:
            self._transport.write(data)
            if self._transport.get_write_buffer_size() > MAX_UNREAD:
                self.abort()

    def hold(self, size: int) -> bool:
        """Count `size` bytes of an answer as held; False (nothing counted) if over a bound."""
        if self._held + size > self.serving.limits.held_per_connection:
            return False
        if not self.serving.held.take(size):
            return False
        self._held += size
        return True

    def release(self, size: int) -> None:
        self._held -= size
        self.serving.held.give_back(size)

    @contextlib.contextmanager
    def holding(self, size: int) -> Iterator[bool]:
        """`size` bytes of an answer held while inside; False if over a bound."""
        held = self.hold(size)
        try:
            yield held
        finally:
            if held:
                self.release(size)

    def start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def pause_reading(self) -> None:
        if self._transport is not None and not self.closing:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closing:
            self._transport.resume_reading()

    def close(self) -> None:
        """Close once what was written is sent; abort if the client takes nothing of it."""
        if self.closing or self._transport is None:
            return
        self.closing = True
        self._transport.close()
        self._closing_limit = self.loop.call_later(
            self.serving.limits.io_timeout, self._transport.abort
        )

    def abort(self) -> None:
        self.closing = True
        if self._transport is not None:
            self._transport.abort()

    def stop(self) -> None:
        """Finish what was asked, take nothing new."""
        if self._session is not None:
            self._session.stop()

    def abandon(self) -> None:
        """Stop answering: the work in flight is cancelled and the connection closed."""
        for task in self._tasks:
            task.cancel()
        self.close()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            _log_once(error)
            self.abort()


_logged: set[str] = set()


def _log_once(error: BaseException) -> None:
    """A failure answering one request: logged at error level once for each kind, then at
    debug level, so a client repeating what caused it cannot flood the log."""
    kind = type(error).__name__
    level = logging.DEBUG if kind in _logged else logging.ERROR
    _logged.add(kind)
    log.log(level, "answering a request failed", extra={"fields": {"error": kind}})


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None
