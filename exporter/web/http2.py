"""HTTP/2 on one TLS connection, with h2: at most `max_streams` requests at a time, each read
whole and answered by the front, sent as the client's flow-control windows allow. A stream
whose client takes nothing of its answer for the I/O timeout is reset, as is one whose request
does not arrive within it; a reset stream's work is cancelled (taken out of the queue when it
has not started). A connection with no stream for the keep-alive timeout is closed."""

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


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    timer: asyncio.TimerHandle
    body: bytearray = field(default_factory=bytearray)
    task: asyncio.Task[None] | None = None
    pending: bytes = b""
    sent: int = 0
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
        self._resets = 0
        self._resets_since = link.loop.time()
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
        for event in events:
            if self._link.closing:
                return
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
        self._stopping = True
        self._h2.close_connection(last_stream_id=self._h2.highest_inbound_stream_id)
        self._flush()
        if not self._streams:
            self._link.close()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
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
            self._drop(event.stream_id)
            self._count_reset()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._link.close()

    def _open(self, stream_id: int, raw: list[tuple[bytes, bytes]] | list[tuple[str, str]]) -> None:
        if self._stopping or len(self._streams) >= self._serving.limits.max_streams:
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        headers = [(_text(name), _text(value)) for name, value in raw]
        timer = self._link.loop.call_later(
            self._serving.limits.io_timeout, self._time_out_stream, stream_id
        )
        self._streams[stream_id] = _Stream(headers, timer)
        self._idle_timer.cancel()

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
        if stream_id in self._streams:
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
        self._progress(stream_id, stream)

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
                    self._drop(stream_id)
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
                else:
                    self._progress(stream_id, stream)

    def _progress(self, stream_id: int, stream: _Stream) -> None:
        stream.timer.cancel()
        stream.timer = self._link.loop.call_later(
            self._serving.limits.io_timeout, self._time_out_stream, stream_id
        )

    def _finish(self, stream_id: int) -> None:
        self._drop(stream_id)
        if not self._streams:
            if self._stopping:
                self._flush()
                self._link.close()
            else:
                self._idle_timer = self._link.loop.call_later(
                    self._serving.limits.keep_alive_timeout, self._time_out_idle
                )

    def _drop(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return
        stream.timer.cancel()
        if stream.task is not None:
            stream.task.cancel()
        if stream.held:
            self._link.release(stream.held)
            stream.held = 0

    def _count_reset(self) -> None:
        now = self._link.loop.time()
        if now - self._resets_since > self._serving.limits.io_timeout:
            self._resets, self._resets_since = 0, now
        self._resets += 1
        if self._resets > MAX_RESETS:
            self._h2.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
            self._flush()
            self._link.close()

    def _time_out_stream(self, stream_id: int) -> None:
        """A request that did not arrive, or an answer the client took nothing of."""
        if stream_id not in self._streams:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
        self._finish(stream_id)
        self._flush()

    def _time_out_idle(self) -> None:
        if not self._streams:
            self._h2.close_connection()
            self._flush()
            self._link.close()

    def _flush(self) -> None:
        self._link.write_now(self._h2.data_to_send())


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
