"""HTTP/2 on one TLS connection, with h2: at most `max_streams` requests at a time, each read
whole and answered by the front, sent as the client's flow-control windows allow. A stream
whose client takes less than a minimum of its answer (or than what remained of it) in an I/O
timeout is reset, as is one whose request does not arrive within it; a reset stream's work is
cancelled (taken out of the queue when it has not started). Floods of resets or of frames
that ask nothing end the connection; one with no stream for the keep-alive timeout is
closed."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from exporter.web.exchange import Answer, Request, text_answer
from exporter.web.link import Link, Peer, Serving

# RFC 9113 8.2.2: connection-specific fields are not sent over HTTP/2
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")
)
_NO_BODY = frozenset((204, 304))
# Streams a client may reset within one I/O timeout before its connection is closed: resetting
# costs it one frame and the server a task (the "rapid reset" attack, CVE-2023-44487).
MAX_RESETS = 1000
# Frames that ask work of the server and carry no request (PING, SETTINGS, PRIORITY, DATA
# without data that does not end a request, WINDOW_UPDATE while nothing waits to be sent or
# opening less than SMALL_WINDOW_UPDATE bytes) a client may send within one I/O timeout before
# its connection is closed: each costs the event loop every client shares.
MAX_CONTROL_FRAMES = 1000
# A window opened by less than this makes the server send a frame (and a TLS record) for a
# few bytes: counted with the frames that ask nothing, so it cannot be done without bound.
SMALL_WINDOW_UPDATE = 1024


class FrameCount:
    """Frames of one kind counted over the last I/O timeout (a window restarted when it ends)."""

    def __init__(self, limit: int, window: float, now: float) -> None:
        self._limit = limit
        self._window = window
        self._count = 0
        self._since = now

    def over(self, now: float) -> bool:
        """Count one more frame; whether the count passed the limit."""
        if now - self._since > self._window:
            self._count, self._since = 0, now
        self._count += 1
        return self._count > self._limit


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    timer: asyncio.TimerHandle
    body: bytearray = field(default_factory=bytearray)
    task: asyncio.Task[None] | None = None
    pending: bytes = b""
    sent: int = 0
    taken: int = 0  # what `sent` was when the last I/O timeout window began
    held: int = 0
    answered: bool = False


class Http2Session:
    def __init__(self, link: Link, serving: Serving, peer: Peer) -> None:
        self._link = link
        self._serving = serving
        self._peer = peer
        limits = serving.limits
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        self._h2.initiate_connection()
        # in force once the client acknowledges them; until then h2's own cap of 100 holds
        # and streams past `max_streams` are refused one by one
        self._h2.update_settings(
            {
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_bytes,
            }
        )
        self._streams: dict[int, _Stream] = {}
        self._stopping = False
        self._last_stream: int | None = None  # named by the GOAWAY sent when stopping
        now = link.loop.time()
        self._resets = FrameCount(MAX_RESETS, limits.io_timeout, now)
        self._control_frames = FrameCount(MAX_CONTROL_FRAMES, limits.io_timeout, now)
        self._idle_timer = link.loop.call_later(limits.keep_alive_timeout, self._time_out_idle)
        self._flush()

    @property
    def idle(self) -> bool:
        return not self._streams

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()  # h2 has queued the GOAWAY naming the error
            self._link.close()
            return
        # a request's own priority comes as an event of its own too: not a frame of its own
        within_requests = {
            id(event.priority_updated)
            for event in events
            if isinstance(event, h2.events.RequestReceived) and event.priority_updated
        }
        for event in events:
            if self._link.closing:
                return
            if id(event) not in within_requests:
                self._handle(event)
        self._pump()
        self._flush()

    def eof_received(self) -> None:
        self._link.close()

    def resume_writing(self) -> None:
        self._pump()
        self._flush()

    def closed(self) -> None:
        self._idle_timer.cancel()
        for stream_id in list(self._streams):
            self._drop(stream_id)

    def stop(self) -> None:
        """GOAWAY: the streams already open are answered, no new one is taken."""
        if self._stopping:
            return
        self._stopping = True
        if not self._streams:
            self._close(h2.errors.ErrorCodes.NO_ERROR)
            return
        # h2 sends nothing more once it has sent a GOAWAY, so this one is written beside it:
        # the client learns which streams will be answered while they are
        self._flush()
        self._last_stream = self._h2.highest_inbound_stream_id
        goaway = GoAwayFrame(stream_id=0, last_stream_id=self._last_stream, error_code=0)
        self._link.write_now(goaway.serialize())

    def _handle(self, event: h2.events.Event) -> None:
        if self._asks_nothing(event) and self._control_frames.over(self._link.loop.time()):
            self._close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        elif isinstance(event, h2.events.RequestReceived):
            self._open(event.stream_id, event.headers or [])
        elif isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.task is None and not stream.answered:
                stream.body.extend(event.data or b"")
                if len(stream.body) > self._serving.limits.max_body_bytes:
                    self._send(event.stream_id, "POST", text_answer(413, "Content Too Large"))
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None and stream.task is None and not stream.answered:
                stream.timer.cancel()
                stream.task = self._link.start(self._respond(event.stream_id, stream))
        elif isinstance(event, h2.events.StreamReset):
            self._finish(event.stream_id)
            if self._resets.over(self._link.loop.time()):
                self._close(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._link.close()

    def _asks_nothing(self, event: h2.events.Event) -> bool:
        """Whether `event` is a frame that carries no request and no data."""
        if isinstance(event, h2.events.WindowUpdated):
            if (event.delta or 0) < SMALL_WINDOW_UPDATE:
                return True
            return not any(stream.sent < len(stream.pending) for stream in self._streams.values())
        if isinstance(event, h2.events.DataReceived):
            return not event.data and event.stream_ended is None
        return isinstance(
            event,
            h2.events.PingReceived | h2.events.RemoteSettingsChanged | h2.events.PriorityUpdated,
        )

    def _open(self, stream_id: int, raw: list[tuple[bytes, bytes]] | list[tuple[str, str]]) -> None:
        limits = self._serving.limits
        if self._stopping or len(self._streams) >= limits.max_streams:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        headers = [(_text(name), _text(value)) for name, value in raw]
        timer = self._link.loop.call_later(limits.io_timeout, self._time_out_stream, stream_id)
        self._streams[stream_id] = _Stream(headers, timer)
        self._idle_timer.cancel()
        # RFC 9113 6.5.2: a field's size is its name's and value's lengths and 32
        if sum(len(name) + len(value) + 32 for name, value in headers) > limits.max_header_bytes:
            self._send(stream_id, "GET", text_answer(431, "Request Header Fields Too Large"))

    async def _respond(self, stream_id: int, stream: _Stream) -> None:
        pseudo = {name: value for name, value in stream.headers if name.startswith(":")}
        request = Request(
            method=pseudo.get(":method", ""),
            target=pseudo.get(":path", ""),
            headers=tuple((name, value) for name, value in stream.headers if name[0] != ":"),
            http_version="2",
            scheme=self._peer.scheme,
            client=self._peer.client,
            server=self._peer.server,
            body=bytes(stream.body),
            authority=pseudo.get(":authority"),
        )
        answer = await self._serving.front.answer(request)
        stream.task = None
        if stream_id in self._streams and not self._link.closing:
            self._send(stream_id, request.method, answer)
            self._pump()
            self._flush()

    def _send(self, stream_id: int, method: str, answer: Answer) -> None:
        stream = self._streams[stream_id]
        stream.answered = True
        body = b"" if method == "HEAD" or answer.status in _NO_BODY else answer.body
        if body and not self._link.hold(len(body)):
            answer = text_answer(503, "Service Unavailable: too many answers in flight")
            body = answer.body
        elif body:
            stream.held = len(body)
        headers = [(":status", str(answer.status))]
        headers += [
            (name.lower(), value)
            for name, value in answer.headers
            if name.lower() not in _HOP_BY_HOP
        ]
        if answer.status not in _NO_BODY and all(name != "content-length" for name, _ in headers):
            headers.append(("content-length", str(len(answer.body))))
        self._h2.send_headers(stream_id, headers, end_stream=not body)
        if not body:
            self._finish(stream_id)
            return
        stream.pending = body
        self._arm(stream_id, stream)

    def _pump(self) -> None:
        """Send what the flow-control windows and the client's reading allow."""
        for stream_id, stream in list(self._streams.items()):
            while stream.sent < len(stream.pending) and self._link.writable:
                try:
                    size = min(
                        self._h2.local_flow_control_window(stream_id),
                        self._h2.max_outbound_frame_size,
                        len(stream.pending) - stream.sent,
                    )
                except h2.exceptions.StreamClosedError:
                    self._finish(stream_id)
                    break
                if size <= 0:
                    break
                chunk = stream.pending[stream.sent : stream.sent + size]
                stream.sent += size
                done = stream.sent == len(stream.pending)
                self._h2.send_data(stream_id, chunk, end_stream=done)
                self._flush()
                if done:
                    self._finish(stream_id)

    def _arm(self, stream_id: int, stream: _Stream) -> None:
        """Start an I/O timeout window in which the client must take its share of the answer."""
        stream.timer.cancel()
        stream.taken = stream.sent
        stream.timer = self._link.loop.call_later(
            self._serving.limits.io_timeout, self._time_out_stream, stream_id
        )

    def _finish(self, stream_id: int) -> None:
        if not self._drop(stream_id):
            return  # a stream refused or already ended: the connection's idle time goes on
        if not self._streams:
            if self._stopping:
                self._close(h2.errors.ErrorCodes.NO_ERROR)
            else:
                self._idle_timer.cancel()
                self._idle_timer = self._link.loop.call_later(
                    self._serving.limits.keep_alive_timeout, self._time_out_idle
                )

    def _drop(self, stream_id: int) -> bool:
        """Forget the stream `stream_id` and what it holds; False if there was none."""
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return False
        stream.timer.cancel()
        if stream.task is not None:
            stream.task.cancel()
        if stream.held:
            self._link.release(stream.held)
            stream.held = 0
        return True

    def _close(self, error: h2.errors.ErrorCodes) -> None:
        """GOAWAY naming `error`, then the close."""
        if self._link.closing:
            return
        last_stream = self._last_stream
        if last_stream is None:
            last_stream = self._h2.highest_inbound_stream_id
        self._h2.close_connection(error_code=error, last_stream_id=last_stream)
        self._flush()
        self._link.close()

    def _time_out_stream(self, stream_id: int) -> None:
        """A request that did not arrive, or an answer the client took less than the minimum
        of (or than what remained of it) in the I/O timeout."""
        stream = self._streams.get(stream_id)
        if stream is None or self._link.closing:
            return
        if stream.pending and stream.sent - stream.taken >= self._serving.limits.min_taken:
            self._arm(stream_id, stream)
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._finish(stream_id)
        self._flush()

    def _time_out_idle(self) -> None:
        if not self._streams:
            self._close(h2.errors.ErrorCodes.NO_ERROR)

    def _flush(self) -> None:
        self._link.write_now(self._h2.data_to_send())


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
