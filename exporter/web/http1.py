"""HTTP/1.1 on one connection, with h11: one request at a time, read whole (head within the
header limit, 431 past it, body within the body limit, both within the I/O timeout of its
first byte), answered by the front, written as fast as the client takes it. Reading goes on
while a request waits (a request's worth at most), so a client that leaves is seen at once.
A connection idle for the keep-alive timeout is closed; a client that half-closes after its
request gets its answer and then the close."""

from __future__ import annotations

import asyncio
import contextlib

import h11

from exporter.web.exchange import Answer, Request, text_answer
from exporter.web.link import Link, Peer, Serving

_NO_BODY = frozenset((204, 304))


class Http1Session:
    def __init__(self, link: Link, serving: Serving, peer: Peer) -> None:
        self._link = link
        self._serving = serving
        self._peer = peer
        self._h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=serving.limits.max_header_bytes
        )
        self._head: h11.Request | None = None
        self._body = bytearray()
        self._answering: asyncio.Task[None] | None = None
        self._peer_closed = False
        self._stopping = False
        self._timer = link.loop.call_later(serving.limits.keep_alive_timeout, self._time_out)

    @property
    def idle(self) -> bool:
        """Between requests: nothing read of the next one, nothing being answered."""
        return self._answering is None and self._head is None and not self._h11.trailing_data[0]

    def data_received(self, data: bytes) -> None:
        if self.idle:
            self._arm(self._serving.limits.io_timeout)  # the request must arrive within it
        self._h11.receive_data(data)
        if self._answering is not None:
            # read on while a request waits, so a client that leaves is seen and its request
            # dropped; pause only once what arrived behind it outgrows a request
            limits = self._serving.limits
            if len(self._h11.trailing_data[0]) > limits.max_header_bytes + limits.max_body_bytes:
                self._link.pause_reading()
            return
        self._read()

    def eof_received(self) -> None:
        self._peer_closed = True
        self._h11.receive_data(b"")
        self._read()

    def resume_writing(self) -> None:
        pass

    def closed(self) -> None:
        self._timer.cancel()
        if self._answering is not None:
            self._answering.cancel()

    def stop(self) -> None:
        """Take no new request: close now if idle, after the answer in progress otherwise."""
        self._stopping = True
        if self._answering is None:
            self._link.close()

    def _read(self) -> None:
        while self._answering is None and not self._link.closing:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                self._refuse(error.error_status_hint, f"Bad Request: {error}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.ConnectionClosed):
                self._link.close()
                return
            if isinstance(event, h11.Request):
                self._begin(event)
            elif isinstance(event, h11.Data):
                self._body.extend(event.data)
                if len(self._body) > self._serving.limits.max_body_bytes:
                    self._refuse(413, "Content Too Large")
            elif isinstance(event, h11.EndOfMessage) and self._head is not None:
                self._answer(self._head, bytes(self._body))

    def _begin(self, head: h11.Request) -> None:
        if head.http_version not in (b"1.0", b"1.1"):
            self._refuse(505, "HTTP Version Not Supported")
            return
        self._head = head
        self._body = bytearray()
        if _header_bytes(head) > self._serving.limits.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large")
            return
        names = {name for name, _ in head.headers}
        length = _content_length(head)
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 6.1: the framing a proxy in front may have read otherwise (smuggling)
            self._refuse(400, "Bad Request: both Transfer-Encoding and Content-Length")
        elif length is not None and length > self._serving.limits.max_body_bytes:
            self._refuse(413, "Content Too Large")
        elif self._h11.they_are_waiting_for_100_continue:
            self._link.write_now(
                self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )

    def _answer(self, head: h11.Request, body: bytes) -> None:
        self._timer.cancel()
        request = Request(
            method=head.method.decode("ascii", "replace"),
            target=head.target.decode("latin-1"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.headers
            ),
            http_version=head.http_version.decode("ascii"),
            scheme=self._peer.scheme,
            client=self._peer.client,
            server=self._peer.server,
            body=body,
        )
        self._answering = self._link.start(self._respond(request))

    async def _respond(self, request: Request) -> None:
        answer = await self._serving.front.answer(request)
        try:
            await self._send(request.method, answer)
        except (ConnectionError, h11.LocalProtocolError):
            self._link.abort()
            return
        finally:
            self._answering = None
        self._head = None
        if self._stopping or self._peer_closed or self._h11.our_state is not h11.DONE:
            self._link.close()
            return
        try:
            self._h11.start_next_cycle()
        except h11.LocalProtocolError:
            self._link.close()
            return
        limits = self._serving.limits
        # a request that began to arrive behind this one has the I/O timeout to arrive whole
        waiting = bool(self._h11.trailing_data[0])
        self._arm(limits.io_timeout if waiting else limits.keep_alive_timeout)
        self._link.resume_reading()
        self._read()

    async def _send(self, method: str, answer: Answer) -> None:
        body = b"" if method == "HEAD" or answer.status in _NO_BODY else answer.body
        with self._link.holding(len(body)) as held:
            if not held:
                answer = text_answer(503, "Service Unavailable: too many answers in flight")
                body = b"" if method == "HEAD" else answer.body
            headers = [(name, value) for name, value in answer.headers]
            if answer.status not in _NO_BODY and not any(
                name.lower() == "content-length" for name, _ in headers
            ):
                headers.append(("Content-Length", str(len(answer.body))))
            if self._stopping:
                headers.append(("Connection", "close"))
            head = self._h11.send(h11.Response(status_code=answer.status, headers=headers))
            await self._link.write(head or b"")
            if body:
                await self._link.write(self._h11.send(h11.Data(data=body)) or b"")
            await self._link.write(self._h11.send(h11.EndOfMessage()) or b"")

    def _refuse(self, status: int, text: str) -> None:
        """Answer `status` and close: the connection cannot be read further."""
        self._timer.cancel()
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            answer = text_answer(status, text, [("Connection", "close")])
            with contextlib.suppress(h11.LocalProtocolError):
                data = (
                    self._h11.send(
                        h11.Response(
                            status_code=status,
                            headers=answer.headers,
                        )
                    )
                    or b""
                )
                data += self._h11.send(h11.Data(data=answer.body)) or b""
                data += self._h11.send(h11.EndOfMessage()) or b""
                self._link.write_now(data)
        self._link.close()

    def _arm(self, seconds: float) -> None:
        self._timer.cancel()
        self._timer = self._link.loop.call_later(seconds, self._time_out)

    def _time_out(self) -> None:
        if self._answering is not None:
            return
        if self._head is not None or self._h11.trailing_data[0]:
            self._refuse(408, "Request Timeout")
        else:
            self._link.close()


def _header_bytes(head: h11.Request) -> int:
    """The size of a request's head as it was sent: its line and every field."""
    line = len(head.method) + len(head.target) + len(head.http_version) + 7
    return line + sum(len(name) + len(value) + 4 for name, value in head.headers)


def _content_length(head: h11.Request) -> int | None:
    for name, value in head.headers:
        if name == b"content-length":
            return int(value)
    return None
