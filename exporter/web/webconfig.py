"""The web configuration file of Prometheus' exporter-toolkit (`--web.config.file`).

The same YAML that Prometheus' Go exporters read: `tls_server_config`, `http_server_config`,
`basic_auth_users` and `rate_limit`. Relative file names are relative to the web
configuration file's directory, as in the toolkit. Everything is checked at load, the TLS
context included, so a broken certificate fails `load_web_config()`, never a request.

What Python's ssl module cannot do is refused at load with a message saying so, never
accepted and ignored:
- `client_auth_type` RequestClientCert and RequireAnyClientCert (OpenSSL verifies every
  client certificate it receives; only the verifying types can be honoured),
- TLS10 and TLS11 as `min_version` or `max_version` (deprecated in Python, refused by
  OpenSSL 3 at its default security level),
- TLS 1.3 names in `cipher_suites` (TLS 1.3 suites are not configurable, as in Go),
- more than one entry in `curve_preferences` (the ssl module sets a single curve),
- inline `cert` and `key` (the ssl module loads certificates and keys from files only).
`client_ca` (inline CA certificates) is supported.

`load_web_config()` returns a frozen `WebConfig`; `exporter.web.auth.protect()` applies it
to every request and `exporter.web.tls.TlsHypercornConfig` serves its TLS context.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, SecretStr, ValidationError

from exporter.config.files import parse_yaml, read_config_text, text_problems
from exporter.config.problems import ConfigError, describe_validation_errors, quoted
from exporter.config.schema import Duration, ExactModel
from exporter.web.auth import BasicAuth, RateLimit
from exporter.web.tls import TlsServerConfig, build_server_context

RESPONSE_HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
}
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
# cost 4 is bcrypt's least; past 16 one check takes many seconds on a thread all checks share
_BCRYPT_COSTS = range(4, 17)
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


# --- the file's schema ---------------------------------------------------------------


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(names)


def _check_bcrypt_hash(value: SecretStr) -> SecretStr:
    shape = _BCRYPT_HASH.fullmatch(value.get_secret_value())
    if not shape:
        raise ValueError(
            "not a bcrypt hash (it should look like $2y$10$ followed by 53 characters; "
            """make one with: htpasswd -nBC 10 "" | tr -d ':\\n')"""
        )
    if int(shape.group(1)) not in _BCRYPT_COSTS:
        raise ValueError(
            f"a bcrypt cost from {_BCRYPT_COSTS.start} to {_BCRYPT_COSTS.stop - 1}: each check "
            "of a higher cost takes seconds, and checks wait for each other"
        )
    return value


BcryptHash = Annotated[SecretStr, AfterValidator(_check_bcrypt_hash)]


class _HttpServer(ExactModel):
    http2: bool = True
    headers: dict[str, str] | None = None


class _RateLimit(ExactModel):
    interval: Duration = 0.0
    burst: int = 0


class _Document(ExactModel):
    tls_server_config: TlsServerConfig | None = None
    http_server_config: _HttpServer | None = None
    basic_auth_users: dict[str, BcryptHash] | None = None
    rate_limit: _RateLimit | None = None


# --- what a loaded file is -----------------------------------------------------------


@dataclass(frozen=True)
class WebConfig:
    """A loaded web configuration; the default is plain HTTP with no authentication."""

    ssl_context: ssl.SSLContext | None = None
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth: BasicAuth | None = None
    rate_limit: RateLimit | None = None


# --- loading -------------------------------------------------------------------------


def load_web_config(path: str | None) -> WebConfig:
    """The web configuration in `path`; None, an empty path or an empty file mean none."""
    if not path:
        return WebConfig()
    text = read_config_text(path)
    return load_web_config_text(text, base_dir=os.path.dirname(os.path.abspath(path)), source=path)


def load_web_config_text(text: str, base_dir: str, source: str = "web config") -> WebConfig:
    """Like load_web_config(), from text; relative file names are joined to `base_dir`."""
    raw = parse_yaml(text, source)
    if raw is None:
        return WebConfig()
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys"])
    problems = text_problems(raw)
    if problems:
        raise ConfigError(problems)
    try:
        document = _Document.model_validate(raw)
    except ValidationError as error:
        problems += describe_validation_errors(error)
        # Check what else can be checked: the sections that are valid so far.
        failed = {item["loc"][0] for item in error.errors() if item["loc"]}
        valid_so_far = {
            key: value for key, value in raw.items() if isinstance(key, str) and key not in failed
        }
        document = _Document.model_validate(valid_so_far)
    http = document.http_server_config or _HttpServer()
    headers = _response_headers(http.headers or {}, problems)
    basic_auth = _basic_auth(document.basic_auth_users or {}, problems)
    rate_limit = _rate_limit(document.rate_limit, problems)
    tls = document.tls_server_config
    context = None
    if tls is not None and tls.model_fields_set:
        context = build_server_context(tls, http.http2, base_dir, problems)
    if problems:
        raise ConfigError(problems)
    return WebConfig(
        ssl_context=context,
        headers=headers,
        basic_auth=basic_auth,
        rate_limit=rate_limit,
    )


def _response_headers(
    headers: Mapping[str, str], problems: list[str]
) -> tuple[tuple[str, str], ...]:
    chosen = []
    for name, value in headers.items():
        where = f"http_server_config.headers.{name}"
        if name not in RESPONSE_HEADERS:
            problems.append(
                f"{where}: this header cannot be set; use one of {_one_of(RESPONSE_HEADERS)}"
            )
            continue
        if value == "":
            continue
        allowed = RESPONSE_HEADERS[name]
        if allowed and value not in allowed:
            problems.append(f"{where}: {quoted(value)} is not one of {_one_of(allowed)}")
        elif not _HEADER_VALUE.fullmatch(value):
            problems.append(f"{where}: a header value must be printable ASCII on one line")
        else:
            chosen.append((name, value))
    return tuple(chosen)


def _basic_auth(users: Mapping[str, SecretStr], problems: list[str]) -> BasicAuth | None:
    for name in users:
        if ":" in name:
            problems.append(f"basic_auth_users.{name}: a user name cannot contain ':'")
    if not users:
        return None
    return BasicAuth({name: hashed.get_secret_value() for name, hashed in users.items()})


def _rate_limit(settings: _RateLimit | None, problems: list[str]) -> RateLimit | None:
    if settings is None or settings.interval == 0:
        return None
    if settings.burst < 1:
        problems.append(
            "rate_limit.burst: must be at least 1 when interval is set "
            "(with 0 every request would be refused)"
        )
        return None
    return RateLimit(interval=settings.interval, burst=settings.burst)
