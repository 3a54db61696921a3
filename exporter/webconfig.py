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

`load_web_config()` returns a frozen `WebConfig`; `protect()` applies basic auth, the rate
limit and the response headers of the current one to every request, and
`TlsHypercornConfig` makes hypercorn serve TLS with the current one's `ssl_context` for
every new connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import secrets
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import bcrypt
import yaml
from hypercorn.config import Config as HypercornConfig
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
    field_validator,
)

from exporter.config import parse_duration
from exporter.validation import describe_validation_errors, yaml_problem

log = logging.getLogger("exporter.webconfig")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's names (crypto/tls.CipherSuites) -> OpenSSL's names, TLS 1.2 and below.
CIPHER_SUITES: dict[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_TLS13_CIPHER_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
CURVES: dict[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# The toolkit allows these response headers only, some with a fixed set of values.
RESPONSE_HEADERS: dict[str, tuple[str, ...]] = {
    "Content-Security-Policy": (),
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
}
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
_BCRYPT_MAX_PASSWORD_BYTES = 72
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
_SECTION = "tls_server_config"


class WebConfigError(Exception):
    """Every problem found in a web configuration file, one line each, with its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --- the file's schema ---------------------------------------------------------------


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(names)


def _check_tls_version(value: str) -> str:
    if value not in TLS_VERSIONS:
        raise ValueError(f'"{value}" is not one of {_one_of(TLS_VERSIONS)}')
    if TLS_VERSIONS[value] < ssl.TLSVersion.TLSv1_2:
        raise ValueError(
            f"{value} cannot be honoured: Python's ssl module deprecates TLS 1.0 and 1.1 and "
            "OpenSSL 3 refuses them at its default security level; use TLS12 or TLS13"
        )
    return value


def _check_cipher(value: str) -> str:
    if value in _TLS13_CIPHER_SUITES:
        raise ValueError(
            f"{value} is a TLS 1.3 suite; TLS 1.3 suites cannot be configured, "
            "cipher_suites applies to TLS 1.2 and below"
        )
    if value not in CIPHER_SUITES:
        raise ValueError(f'unknown cipher suite "{value}"; use one of {_one_of(CIPHER_SUITES)}')
    return value


def _check_curve(value: str) -> str:
    if value not in CURVES:
        raise ValueError(f'unknown curve "{value}"; use one of {_one_of(CURVES)}')
    return value


def _check_bcrypt_hash(value: SecretStr) -> SecretStr:
    if not _BCRYPT_HASH.match(value.get_secret_value()):
        raise ValueError(
            "not a bcrypt hash (it should look like $2y$10$ followed by 53 characters; "
            """make one with: htpasswd -nBC 10 "" | tr -d ':\\n')"""
        )
    return value


TlsVersionName = Annotated[str, AfterValidator(_check_tls_version)]
CipherName = Annotated[str, AfterValidator(_check_cipher)]
CurveName = Annotated[str, AfterValidator(_check_curve)]
BcryptHash = Annotated[SecretStr, AfterValidator(_check_bcrypt_hash)]
Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, hide_input_in_errors=True)


class _TlsServer(_Strict):
    cert_file: str | None = None
    key_file: str | None = None
    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    client_ca_file: str | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: list[str] | None = None
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    cipher_suites: list[CipherName] | None = None
    curve_preferences: list[CurveName] | None = None
    prefer_server_cipher_suites: bool = True

    @field_validator("client_auth_type")
    @classmethod
    def _check_client_auth(cls, value: str) -> str:
        if value in _UNVERIFIED_CLIENT_AUTH:
            raise ValueError(
                f"{value} cannot be honoured: Python's ssl module verifies every client "
                "certificate it asks for; use VerifyClientCertIfGiven or "
                "RequireAndVerifyClientCert with client_ca_file"
            )
        if value not in CLIENT_AUTH_TYPES:
            raise ValueError(f'"{value}" is not one of {_one_of(CLIENT_AUTH_TYPES)}')
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _check_one_curve(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) > 1:
            raise ValueError(
                "Python's ssl module can limit the key exchange to one curve only; list one"
            )
        return value


class _HttpServer(_Strict):
    http2: bool = True
    headers: dict[str, str] | None = None


class _RateLimit(_Strict):
    interval: Duration = 0.0
    burst: int = 0


class _Document(_Strict):
    tls_server_config: _TlsServer | None = None
    http_server_config: _HttpServer | None = None
    basic_auth_users: dict[str, BcryptHash] | None = None
    rate_limit: _RateLimit | None = None


# --- what a loaded file is -----------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """A token bucket shared by all requests: `burst` tokens, one more every `interval`."""

    interval: float
    burst: int


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


@dataclass(frozen=True)
class WebConfig:
    """A loaded web configuration; the default is plain HTTP with no authentication."""

    ssl_context: ssl.SSLContext | None = None
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth: BasicAuth | None = None
    rate_limit: RateLimit | None = None
    http2: bool = False
    client_auth_type: str = "NoClientCert"

    def log_fields(self) -> dict[str, object]:
        """What is in force, for the startup log; no secrets."""
        return {
            "tls": self.ssl_context is not None,
            "http2": self.http2,
            "client_auth_type": self.client_auth_type,
            "basic_auth_users": len(self.basic_auth.users) if self.basic_auth else 0,
            "rate_limit": f"{self.rate_limit.burst}/{self.rate_limit.interval}s"
            if self.rate_limit
            else "off",
        }


# --- loading -------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML with duplicate keys refused, as the toolkit's strict YAML decoding does."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f'duplicate key "{key}"', key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_web_config(path: str | None) -> WebConfig:
    """The web configuration in `path`; None, an empty path or an empty file mean none."""
    if not path:
        return WebConfig()
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise WebConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except UnicodeDecodeError:
        raise WebConfigError([f"{path}: not UTF-8 text"]) from None
    return load_web_config_text(text, base_dir=os.path.dirname(os.path.abspath(path)), source=path)


def load_web_config_text(text: str, base_dir: str, source: str = "web config") -> WebConfig:
    """Like load_web_config(), from text; relative file names are joined to `base_dir`."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise WebConfigError([f"{source}: not valid YAML: {yaml_problem(error)}"]) from None
    if raw is None:
        return WebConfig()
    if not isinstance(raw, dict):
        raise WebConfigError([f"{source}: the top level must be a mapping of keys"])
    problems: list[str] = []
    try:
        document = _Document.model_validate(raw)
    except ValidationError as error:
        problems += describe_validation_errors(error)
        # Check what else can be checked: the sections that are valid so far.
        failed = {item["loc"][0] for item in error.errors()}
        document = _Document.model_validate({k: v for k, v in raw.items() if k not in failed})
    http = document.http_server_config or _HttpServer()
    headers = _response_headers(http.headers or {}, problems)
    basic_auth = _basic_auth(document.basic_auth_users or {}, problems)
    rate_limit = _rate_limit(document.rate_limit, problems)
    tls = document.tls_server_config
    context = None
    if tls is not None and tls.model_fields_set:
        context = _tls_context(tls, http.http2, base_dir, problems)
    if problems:
        raise WebConfigError(problems)
    return WebConfig(
        ssl_context=context,
        headers=headers,
        basic_auth=basic_auth,
        rate_limit=rate_limit,
        http2=context is not None and http.http2,
        client_auth_type=tls.client_auth_type if context is not None and tls else "NoClientCert",
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
            problems.append(f'{where}: "{value}" is not one of {_one_of(allowed)}')
        elif not _HEADER_VALUE.match(value):
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


class _EncryptedKey(Exception):
    pass


def _refuse_passphrase() -> bytes:
    """Called by OpenSSL only for an encrypted key; never prompt on the terminal."""
    raise _EncryptedKey


def _tls_context(
    tls: _TlsServer, http2: bool, base_dir: str, problems: list[str]
) -> ssl.SSLContext | None:
    before = len(problems)
    _check_tls_combinations(tls, problems)
    if len(problems) > before or not tls.cert_file or not tls.key_file:
        return None
    cert_file = _resolve(base_dir, tls.cert_file)
    key_file = _resolve(base_dir, tls.key_file)
    ca_file = _resolve(base_dir, tls.client_ca_file) if tls.client_ca_file else None
    for key, path in (
        ("cert_file", cert_file),
        ("key_file", key_file),
        ("client_ca_file", ca_file),
    ):
        if path is not None:
            _check_readable(f"{_SECTION}.{key}", path, problems)
    if len(problems) > before:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_certificate(context, cert_file, key_file, problems)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if ca_file is not None or tls.client_ca is not None:
        _load_client_ca(context, ca_file, tls.client_ca, problems)
    if tls.cipher_suites:
        _set_cipher_suites(context, tls.cipher_suites, problems)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve_preferences:
        _set_curve(context, tls.curve_preferences[0], problems)
    if tls.client_allowed_sans is not None:
        context.sslobject_class = _san_checking_class(tls.client_allowed_sans)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    return None if len(problems) > before else context


def _check_tls_combinations(tls: _TlsServer, problems: list[str]) -> None:
    """Settings that contradict each other, found before any file is opened."""
    if tls.cert is not None:
        problems.append(
            f"{_SECTION}.cert: inline certificates are not supported; "
            "put the certificate in a file and set cert_file"
        )
    if tls.key is not None:
        problems.append(
            f"{_SECTION}.key: inline keys are not supported; put the key in a file "
            "readable only by the exporter and set key_file"
        )
    for key in ("cert_file", "key_file"):
        if not getattr(tls, key) and getattr(tls, key.removesuffix("_file")) is None:
            problems.append(f"{_SECTION}.{key}: required to serve TLS")
    has_ca = tls.client_ca_file is not None or tls.client_ca is not None
    if tls.client_ca_file is not None and tls.client_ca is not None:
        problems.append(f"{_SECTION}.client_ca: give either client_ca or client_ca_file")
    if CLIENT_AUTH_TYPES[tls.client_auth_type] != ssl.CERT_NONE and not has_ca:
        problems.append(
            f"{_SECTION}.client_ca_file: required with client_auth_type "
            f"{tls.client_auth_type} (the CA that signs client certificates)"
        )
    if has_ca and tls.client_auth_type == "NoClientCert":
        problems.append(
            f"{_SECTION}.client_auth_type: a client CA is set but client_auth_type is "
            "NoClientCert; use RequireAndVerifyClientCert"
        )
    if tls.client_allowed_sans is not None:
        if tls.client_auth_type != "RequireAndVerifyClientCert":
            problems.append(
                f"{_SECTION}.client_allowed_sans: needs client_auth_type "
                "RequireAndVerifyClientCert, so every client has a certificate to match"
            )
        elif not tls.client_allowed_sans:
            problems.append(
                f"{_SECTION}.client_allowed_sans: an empty list would refuse every client; "
                "list at least one SAN or remove the key"
            )
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        problems.append(
            f"{_SECTION}.max_version: {tls.max_version} is lower than min_version {tls.min_version}"
        )


def _resolve(base_dir: str, path: str) -> str:
    return os.path.normpath(os.path.join(base_dir, path))


def _check_readable(where: str, path: str, problems: list[str]) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        problems.append(f"{where}: cannot read {path}: {error.strerror}")


def _load_certificate(
    context: ssl.SSLContext, cert_file: str, key_file: str, problems: list[str]
) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
    except ssl.SSLError:
        problems.append(f"{_SECTION}.cert_file: no PEM certificate in {cert_file}")
        return
    try:
        context.load_cert_chain(cert_file, key_file, password=_refuse_passphrase)
    except _EncryptedKey:
        problems.append(
            f"{_SECTION}.key_file: {key_file} is encrypted with a passphrase, which is not "
            "supported; store the key unencrypted, readable only by the exporter"
        )
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            problems.append(
                f"{_SECTION}.key_file: the key in {key_file} does not belong to "
                f"the certificate in {cert_file}"
            )
        else:
            problems.append(f"{_SECTION}.key_file: no PEM private key in {key_file}")


def _load_client_ca(
    context: ssl.SSLContext, ca_file: str | None, ca_text: str | None, problems: list[str]
) -> None:
    try:
        if ca_file is not None:
            context.load_verify_locations(cafile=ca_file)
        else:
            context.load_verify_locations(cadata=ca_text)
    except ssl.SSLError:
        if ca_file is not None:
            problems.append(f"{_SECTION}.client_ca_file: no PEM certificate in {ca_file}")
        else:
            problems.append(f"{_SECTION}.client_ca: not PEM certificates")


def _set_cipher_suites(context: ssl.SSLContext, names: list[str], problems: list[str]) -> None:
    try:
        context.set_ciphers(":".join(CIPHER_SUITES[name] for name in names))
    except ssl.SSLError:
        available: set[str] = set()
    else:
        available = {cipher["name"] for cipher in context.get_ciphers()}
    for index, name in enumerate(names):
        if CIPHER_SUITES[name] not in available:
            problems.append(
                f"{_SECTION}.cipher_suites[{index}]: {name} is not available "
                f"in {ssl.OPENSSL_VERSION}"
            )


def _set_curve(context: ssl.SSLContext, name: str, problems: list[str]) -> None:
    try:
        context.set_ecdh_curve(CURVES[name])
    except (ValueError, ssl.SSLError):
        problems.append(
            f"{_SECTION}.curve_preferences[0]: {name} is not available in {ssl.OPENSSL_VERSION}"
        )


# --- client_allowed_sans --------------------------------------------------------------


class ClientSanRefused(ssl.SSLCertVerificationError):
    """The client's certificate is valid but names none of client_allowed_sans."""


def _san_values(peer_certificate: Mapping[str, Any]) -> list[str]:
    """DNS names, e-mail addresses, IP addresses and URIs, as Go's crypto/x509 lists them."""
    kinds = {"DNS", "email", "IP Address", "URI"}
    return [value for kind, value in peer_certificate.get("subjectAltName", ()) if kind in kinds]


def _san_matches(value: str, allowed: frozenset[str]) -> bool:
    if value in allowed:
        return True
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return False
    for entry in allowed:
        try:
            if ipaddress.ip_address(entry) == address:
                return True
        except ValueError:
            continue
    return False


class _SanCheckingSSLObject(ssl.SSLObject):
    """Ends the handshake with an error unless the verified client certificate carries one
    of `allowed_sans`. asyncio and trio (hence hypercorn) wrap connections with wrap_bio(),
    which creates the context's `sslobject_class`."""

    allowed_sans: ClassVar[frozenset[str]] = frozenset()

    def do_handshake(self) -> None:
        super().do_handshake()
        values = _san_values(self.getpeercert() or {})
        if not any(_san_matches(value, self.allowed_sans) for value in values):
            log.warning(
                "client certificate refused",
                extra={
                    "fields": {"reason": "no SAN listed in client_allowed_sans", "sans": values}
                },
            )
            raise ClientSanRefused("client certificate has no SAN listed in client_allowed_sans")


def _san_checking_class(allowed: Iterable[str]) -> type[ssl.SSLObject]:
    return type(
        "SanCheckingSSLObject", (_SanCheckingSSLObject,), {"allowed_sans": frozenset(allowed)}
    )


# --- serving -------------------------------------------------------------------------


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


class FollowingSSLContext(ssl.SSLContext):
    """A server context that hands every new connection to the TLS context of the web config
    in force at that moment, so a reload changes certificates, client CAs, client_auth_type,
    versions, ciphers and ALPN for new connections, as the toolkit's re-reading of its file
    on every handshake does. Servers built on asyncio or trio (hypercorn) create connections
    with `wrap_bio()`, the one method followed.

    A server that listens with TLS keeps doing so: if a reload turns TLS off, the last TLS
    context stays in use (with a warning), since a listening socket cannot change protocol.
    """

    current: Callable[[], WebConfig]
    last: ssl.SSLContext
    warned: bool

    @classmethod
    def following(
        cls, current: Callable[[], WebConfig], initial: ssl.SSLContext
    ) -> FollowingSSLContext:
        context = cls(ssl.PROTOCOL_TLS_SERVER)
        context.current = current
        context.last = initial
        context.warned = False
        return context

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        context = self.current().ssl_context
        if context is not None:
            self.last, self.warned = context, False
        elif not self.warned:
            self.warned = True
            log.warning(
                "the web config no longer sets up TLS; "
                "TLS stays on with the previous settings until a restart"
            )
        return self.last.wrap_bio(incoming, outgoing, server_side, server_hostname, session)


class TlsHypercornConfig(HypercornConfig):
    """Hypercorn settings serving TLS when the web config at start has a TLS context, and
    plain HTTP otherwise. Hypercorn asks for the context once, when it starts listening; the
    context it gets follows `current` for every new connection (`FollowingSSLContext`)."""

    def __init__(self, current: Callable[[], WebConfig]) -> None:
        super().__init__()
        self.current_web_config = current

    @classmethod
    def from_config(
        cls, base: HypercornConfig, current: Callable[[], WebConfig]
    ) -> TlsHypercornConfig:
        """A copy of `base` (every setting made on it) serving `current`'s TLS."""
        config = cls(current)
        config.__dict__.update(
            {key: value for key, value in vars(base).items() if key != "current_web_config"}
        )
        return config

    @property
    def ssl_enabled(self) -> bool:
        return self.current_web_config().ssl_context is not None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        initial = self.current_web_config().ssl_context
        if initial is None:
            return None
        return FollowingSSLContext.following(self.current_web_config, initial)
