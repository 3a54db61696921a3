"""Basic auth and the WSGI middleware that applies the current web config to every
request: rate limit, basic auth and response headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import bcrypt

if TYPE_CHECKING:
    from exporter.webconfig import RateLimit, WebConfig

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_BCRYPT_MAX_PASSWORD_BYTES = 72


# --- basic auth ----------------------------------------------------------------------


class BasicAuth:
    """Checks `Authorization: Basic ...` against bcrypt hashes.

    Unknown users are checked against one of the configured hashes (the costliest) and
    refused whatever the outcome, so the time taken does not tell which users exist.
    Successful checks are remembered (up to `cache_size`, least recently used dropped
    first) under a salted SHA-256 of user, hash and password, so a scraper does not pay for
    bcrypt on every request; failures are never remembered. bcrypt runs one check at a
    time, as in the toolkit, so wrong passwords cannot take every CPU.
    """

    def __init__(self, users: Mapping[str, str], cache_size: int = 1024) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        self._hashes = {name: hashed.encode("ascii") for name, hashed in users.items()}
        self._decoy = max(self._hashes.values(), key=lambda hashed: int(hashed[4:6]))
        self._salt = secrets.token_bytes(32)
        self._cache_size = cache_size
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(sorted(self._hashes))

    def __repr__(self) -> str:
        return f"BasicAuth(users={list(self.users)!r})"

    def check(self, authorization_header: str | None) -> bool:
        credentials = parse_basic_credentials(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        known = self._hashes.get(user)
        hashed = known if known is not None else self._decoy
        key = self._cache_key(user, hashed, password)
        if self._cached(key):
            return True
        if not self._bcrypt_matches(password, hashed) or known is None:
            return False
        self._remember(key)
        return True

    def _cache_key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        digest = hashlib.sha256(self._salt)
        for part in (user.encode(), hashed, password):
            digest.update(len(part).to_bytes(4, "big"))
            digest.update(part)
        return digest.digest()

    def _cached(self, key: bytes) -> bool:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
            return False

    def _remember(self, key: bytes) -> None:
        with self._cache_lock:
            self._cache[key] = None
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _bcrypt_matches(self, password: bytes, hashed: bytes) -> bool:
        # bcrypt reads 72 bytes at most; htpasswd and Go's bcrypt do the same.
        password = password[:_BCRYPT_MAX_PASSWORD_BYTES]
        with self._bcrypt_lock:
            try:
                return bool(bcrypt.checkpw(password, hashed))
            except ValueError:
                return False


def parse_basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from `Basic base64(user:password)`; None for anything else."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


# --- the middleware ------------------------------------------------------------------


class _Limiter:
    """One token bucket for the whole server, started afresh when its settings change."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._settings: RateLimit | None = None
        self._tokens = 0.0
        self._last = 0.0

    def allow(self, settings: RateLimit) -> bool:
        with self._lock:
            now = self._clock()
            if settings != self._settings:
                self._settings = settings
                self._tokens = float(settings.burst)
            else:
                refill = (now - self._last) / settings.interval
                self._tokens = min(float(settings.burst), self._tokens + refill)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


def protect(
    app: WsgiApp,
    current: Callable[[], WebConfig],
    clock: Callable[[], float] = time.monotonic,
) -> WsgiApp:
    """`app` behind the current web config: rate limit (429), basic auth on every path
    (401 with `WWW-Authenticate: Basic`, as the toolkit does, health included) and the
    configured response headers on every response. `current` is called once per request,
    so a reloaded web config applies from the next request on."""
    limiter = _Limiter(clock)

    def protected(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        web = current()
        if web.rate_limit is not None and not limiter.allow(web.rate_limit):
            return _refuse(environ, start_response, "429 Too Many Requests", list(web.headers))
        if web.basic_auth is not None and not web.basic_auth.check(
            environ.get("HTTP_AUTHORIZATION")
        ):
            return _refuse(
                environ,
                start_response,
                "401 Unauthorized",
                [("WWW-Authenticate", "Basic"), *web.headers],
            )
        if not web.headers:
            return app(environ, start_response)

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            present = {name.lower() for name, _ in headers}
            extra = [(name, value) for name, value in web.headers if name.lower() not in present]
            return start_response(status, [*headers, *extra], exc_info)

        return app(environ, start_with_headers)

    return protected


def _refuse(
    environ: Environ, start_response: StartResponse, status: str, headers: list[tuple[str, str]]
) -> list[bytes]:
    body = (status.split(" ", 1)[1] + "\n").encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
        ],
    )
    return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
