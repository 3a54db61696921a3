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
- more than one entry in `curve_preferences` (the ssl module sets a single curve).

`load_web_config()` returns a frozen `WebConfig` that follows its file: `latest()` is the
newest version of the file that loads, checked by the file's stamp (never read unless
changed), so a changed file applies to new connections and requests without a signal, as the
toolkit's reading of the file for every connection does.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated

import yaml
from pydantic import AfterValidator, SecretStr, ValidationError

from exporter.config.files import parse_yaml, read_config_text, text_problems
from exporter.config.problems import ConfigError, describe_validation_errors, quoted
from exporter.config.schema import Duration, ExactModel
from exporter.web.auth import BasicAuth, RateLimit
from exporter.web.certificates import FileStamp, file_stamp
from exporter.web.server_tls import ServerTls
from exporter.web.tls import TlsServerConfig

log = logging.getLogger(__name__)

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
# how often, at most, the file's stamp is looked at to see whether it changed
RECHECK_SECONDS = 0.25
_NULL_TAG = "tag:yaml.org,2002:null"
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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

    tls: ServerTls | None = None
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth: BasicAuth | None = None
    rate_limit: RateLimit | None = None
    newer: Callable[[], WebConfig] | None = field(default=None, compare=False, repr=False)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """What the server serves TLS with; None: plain HTTP."""
        return self.tls.context if self.tls is not None else None

    @property
    def certificate_not_after(self) -> float | None:
        """When the certificate served now expires, in seconds since the epoch."""
        return self.tls.not_after if self.tls is not None else None

    def latest(self) -> WebConfig:
        """The newest good version of the file this was loaded from (itself if none)."""
        return self.newer() if self.newer is not None else self


# --- loading -------------------------------------------------------------------------


def load_web_config(path: str | None) -> WebConfig:
    """The web configuration in `path`, following its file; None or an empty path mean none."""
    if not path:
        return WebConfig()
    stamp = file_stamp(path)
    first = _load_file(path)
    return replace(first, newer=_FollowedFile(path, first, stamp).current)


def _load_file(path: str) -> WebConfig:
    text = read_config_text(path)
    return load_web_config_text(text, base_dir=os.path.dirname(os.path.abspath(path)), source=path)


class _FollowedFile:
    """A web config file's newest good version. Its stamp is looked at every RECHECK_SECONDS
    at most, and the file read only when the stamp changed. A version that does not load, or
    that would turn TLS on or off (a listening socket keeps its protocol), keeps the last
    good one, with one log line per bad version."""

    def __init__(
        self,
        path: str,
        first: WebConfig,
        stamp: FileStamp | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._current = first
        self._tls_on = first.tls is not None
        self._stamp = stamp
        self._refused: FileStamp | None = None
        self._clock = clock
        self._next_check = clock() + RECHECK_SECONDS
        self._lock = threading.Lock()

    def current(self) -> WebConfig:
        if self._clock() < self._next_check:
            return self._current
        with self._lock:
            self._next_check = self._clock() + RECHECK_SECONDS
            stamp = file_stamp(self._path)  # before reading: a change while reading is seen
            if stamp not in (self._stamp, self._refused):
                self._load(stamp)
            return self._current

    def _load(self, stamp: FileStamp | None) -> None:
        try:
            loaded = _load_file(self._path)
        except ConfigError as error:
            self._refuse(stamp, "; ".join(error.problems))
            return
        except Exception as error:  # nothing a file holds may fail a request
            self._refuse(stamp, f"unexpected {type(error).__name__}")
            return
        if (loaded.tls is not None) != self._tls_on:
            self._refuse(stamp, "turning TLS on or off needs a restart")
            return
        self._current, self._stamp, self._refused = loaded, stamp, None
        log.info("web config file changed; new connections use it")

    def _refuse(self, stamp: FileStamp | None, problems: str) -> None:
        self._refused = stamp
        log.error(
            "web config file changed but cannot be used; keeping the last good version",
            extra={"fields": {"problems": problems}},
        )


def load_web_config_text(text: str, base_dir: str, source: str = "web config") -> WebConfig:
    """Like load_web_config(), from text; relative file names are joined to `base_dir`."""
    raw = parse_yaml(text, source)
    if raw is None:
        return WebConfig()
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys"])
    _headers_as_written(raw, text)
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
    server_tls = None
    if tls is not None and tls.turns_tls_on:
        server_tls = ServerTls.build(tls, http.http2, base_dir, problems)
    if problems:
        raise ConfigError(problems)
    return WebConfig(
        tls=server_tls,
        headers=headers,
        basic_auth=basic_auth,
        rate_limit=rate_limit,
    )


def _headers_as_written(raw: dict[object, object], text: str) -> None:
    """Header values as the toolkit's YAML decoder gives them to its string map: any scalar
    as written (`X-XSS-Protection: 1`, `yes`, `1.10`), a null as the empty text. Other values
    are left for the schema to refuse."""
    http = raw.get("http_server_config")
    if not isinstance(http, dict) or not isinstance(http.get("headers"), dict):
        return
    if all(isinstance(value, str) for value in http["headers"].values()):
        return
    root = yaml.compose(text, Loader=_YAML_LOADER)  # parse_yaml bounded it already
    headers = _mapping_child(_mapping_child(root, "http_server_config"), "headers")
    if headers is None:
        return
    values = http["headers"]
    for key_node, value_node in headers.value:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(value_node, yaml.ScalarNode) or name not in values:
            continue
        if not isinstance(values[name], str | bytes):  # bytes: refused as binary later
            values[name] = "" if value_node.tag == _NULL_TAG else value_node.value


def _mapping_child(node: yaml.Node | None, key: str) -> yaml.MappingNode | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node if isinstance(value_node, yaml.MappingNode) else None
    return None


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
