"""One HTTP exchange, whatever the protocol carried it: the request as the server read it, the
answer it sends, and the rules RFC 9110 and 9112 set for them that do not depend on the
route: request forms, Host, methods and content codings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# RFC 9110 section 9: the methods it defines (and PATCH, RFC 5789). Anything else is answered
# 501; these are answered 405 with Allow where a route does not take them.
KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
# RFC 3986 section 3.2: a host (reg-name, IPv4 or [IPv6]) and an optional port
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]  # names in lower case, in the order received
    http_version: str  # "1.0", "1.1" or "2"
    scheme: str = "http"
    client: tuple[str, int] | None = None
    server: tuple[str, int] | None = None
    body: bytes = b""
    authority: str | None = None  # HTTP/2's :authority

    def values(self, name: str) -> list[str]:
        """Every value of the header `name` (lower case), in order."""
        return [value for key, value in self.headers if key == name]

    def value(self, name: str) -> str | None:
        """The header `name` as one field value: its lines joined by commas (RFC 9110 5.3)."""
        values = self.values(name)
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def text_answer(status: int, text: str, headers: list[tuple[str, str]] | None = None) -> Answer:
    body = f"{text}\n".encode()
    return Answer(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
        body,
    )


@dataclass(frozen=True)
class Target:
    path: str
    query: str


def parse_target(request: Request) -> Target | Answer:
    """The path and query of an origin-form or absolute-form target (RFC 9112 3.2), or the
    answer to a request that cannot be served: `OPTIONS *` is answered here, a method RFC 9110
    does not define is 501, other forms and broken Host fields are 400."""
    if request.method not in KNOWN_METHODS:
        return text_answer(501, "Not Implemented")
    target = request.target
    if target == "*":
        if request.method == "OPTIONS":
            return Answer(200, [("Allow", "GET, HEAD, POST, PUT, OPTIONS")])
        return text_answer(400, "Bad Request: * is a target for OPTIONS only")
    hosts = request.values("host")
    if len(hosts) > 1:
        return text_answer(400, "Bad Request: more than one Host")
    if request.http_version == "1.1" and not hosts:
        return text_answer(400, "Bad Request: HTTP/1.1 needs a Host")
    if hosts and not _AUTHORITY.fullmatch(hosts[0]):
        return text_answer(400, "Bad Request: Host is not a host and port")
    if target.startswith("/"):
        path, _, query = target.partition("?")
        return Target(path, query)
    if target[:7].lower() == "http://" or target[:8].lower() == "https://":
        try:
            parts = urlsplit(target)
        except ValueError:
            return text_answer(400, "Bad Request: target is not a URI")
        if not parts.netloc or not _AUTHORITY.fullmatch(parts.netloc):
            return text_answer(400, "Bad Request: target has no host")
        return Target(parts.path or "/", parts.query)
    return text_answer(400, "Bad Request: target is not a path or an absolute URI")


def accepts_gzip(accept_encoding: str | None) -> bool | None:
    """Whether an answer may be gzipped under `accept_encoding` (RFC 9110 12.5.3): True if
    gzip is preferred, False for no content coding, None when neither is acceptable."""
    if accept_encoding is None:
        return False
    weights: dict[str, float] = {}
    for member in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in member.split(";"))
        if not coding:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, text = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = min(max(float(text), 0.0), 1.0)
                except ValueError:
                    weight = 0.0
        coding = "gzip" if coding.lower() == "x-gzip" else coding.lower()
        weights[coding] = weight
    anything = weights.get("*")
    gzip = weights.get("gzip", anything if anything is not None else 0.0)
    identity = weights.get("identity", anything if anything is not None else 1.0)
    if gzip > 0 and gzip >= identity:
        return True
    if identity > 0:
        return False
    return None
