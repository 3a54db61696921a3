"""The web config's `tls_server_config`: its fields, the settings that contradict each other,
and the server context they make (certificates, client CAs, versions, cipher suites, curves,
`client_allowed_sans`), rebuilt when the certificate, key or client CA files change."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, SecretStr, field_validator

from exporter.config.files import FileProblem
from exporter.config.problems import quoted
from exporter.config.schema import ExactModel
from exporter.web.certificates import (
    FileStamp,
    file_stamp,
    first_certificate_der,
    not_after,
    private_path,
    read_pem_file,
)

log = logging.getLogger(__name__)

TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH_TYPES: dict[str, ssl.VerifyMode] = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
# Go's names (crypto/tls.CipherSuites(), which leaves out the insecure suites, RSA key
# exchange included) -> OpenSSL's names, TLS 1.2 and below.
CIPHER_SUITES: dict[str, str] = {
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
CURVES: dict[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# Go accepts these in cipher_suites and ignores them: TLS 1.3 suites are not configurable.
TLS13_CIPHER_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)
# RFC 7540 section 9.2.2, as Go's net/http checks it before serving HTTP/2
HTTP2_REQUIRED_SUITES = (
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
)
_SECTION = "tls_server_config"


# --- the section ------------------------------------------------------------------


_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")


def _one_of(names: Iterable[str]) -> str:
    return ", ".join(name for name in names if name)


def _check_tls_version(value: str) -> str:
    if value not in TLS_VERSIONS:
        raise ValueError(f"{quoted(value)} is not one of {_one_of(TLS_VERSIONS)}")
    if TLS_VERSIONS[value] < ssl.TLSVersion.TLSv1_2:
        raise ValueError(
            f"{value} cannot be honoured: Python's ssl module deprecates TLS 1.0 and 1.1 and "
            "OpenSSL 3 refuses them at its default security level; use TLS12 or TLS13"
        )
    return value


def _check_cipher(value: str) -> str:
    if value not in CIPHER_SUITES and value not in TLS13_CIPHER_SUITES:
        raise ValueError(
            f"unknown cipher suite {quoted(value)}; use one of {_one_of(CIPHER_SUITES)}"
        )
    return value


def _check_curve(value: str) -> str:
    if value not in CURVES:
        raise ValueError(f"unknown curve {quoted(value)}; use one of {_one_of(CURVES)}")
    return value


TlsVersionName = Annotated[str, AfterValidator(_check_tls_version)]
CipherName = Annotated[str, AfterValidator(_check_cipher)]
CurveName = Annotated[str, AfterValidator(_check_curve)]


class TlsServerConfig(ExactModel):
    """`tls_server_config`, field by field; `_check_tls_combinations` checks them together."""

    cert_file: str = ""
    key_file: str = ""
    cert: str = ""
    key: SecretStr = SecretStr("")
    client_ca: str = ""
    client_ca_file: str = ""
    client_auth_type: str = ""
    client_allowed_sans: list[str] | None = None
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    cipher_suites: list[CipherName] | None = None
    curve_preferences: list[CurveName] | None = None
    prefer_server_cipher_suites: bool = True

    @field_validator(
        "cert_file", "key_file", "cert", "key", "client_ca", "client_ca_file", mode="before"
    )
    @classmethod
    def _null_is_empty(cls, value: object) -> object:
        """As Go's YAML decoder: a null where text is expected is the empty text."""
        return "" if value is None else value

    @field_validator("client_auth_type")
    @classmethod
    def _check_client_auth(cls, value: str) -> str:
        if value in _UNVERIFIED_CLIENT_AUTH:
            raise ValueError(
                f"{value} cannot be honoured: Python's ssl module verifies every client "
                "certificate it asks for; use VerifyClientCertIfGiven or "
                "RequireAndVerifyClientCert"
            )
        if value not in CLIENT_AUTH_TYPES:
            raise ValueError(f"{quoted(value)} is not one of {_one_of(CLIENT_AUTH_TYPES)}")
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _check_one_curve(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) > 1:
            raise ValueError(
                "Python's ssl module can limit the key exchange to one curve only; list one"
            )
        return value

    @property
    def turns_tls_on(self) -> bool:
        """The toolkit's rule: TLS is served when a certificate, key, client CA or client
        authentication type is given; the other settings alone leave plain HTTP."""
        return any(
            (
                self.cert_file,
                self.cert,
                self.key_file,
                self.key.get_secret_value(),
                self.client_ca_file,
                self.client_ca,
                self.client_auth_type,
            )
        )


# --- the server context --------------------------------------------------------------


class _EncryptedKey(Exception):
    pass


def _refuse_passphrase() -> bytes:
    """Called by OpenSSL only for an encrypted key; never prompt on the terminal."""
    raise _EncryptedKey


@dataclass(frozen=True)
class _Files:
    """The files a TLS section names, joined to the web config's folder; None when inline."""

    cert: str | None
    key: str | None
    client_ca: str | None

    @classmethod
    def of(cls, tls: TlsServerConfig, base_dir: str) -> _Files:
        def resolve(path: str) -> str | None:
            return os.path.normpath(os.path.join(base_dir, path)) if path else None

        return cls(resolve(tls.cert_file), resolve(tls.key_file), resolve(tls.client_ca_file))

    def stamps(self) -> tuple[FileStamp | None, ...]:
        return tuple(file_stamp(path) for path in (self.cert, self.key, self.client_ca) if path)


@dataclass(frozen=True)
class _Built:
    context: ssl.SSLContext
    stamps: tuple[FileStamp | None, ...]
    not_after: float | None


class ServerTls:
    """The TLS one web config describes. `context` is what the server listens with; at each
    handshake (its `sni_callback`) the certificate, key and client CA files are checked by
    their stamps, never read unless changed, and a changed set is loaded with the same
    settings and used from that handshake on. A set that does not load (a half-written file,
    a key of another certificate) keeps the last good one, with one log line per bad version.
    """

    def __init__(
        self, settings: TlsServerConfig, http2: bool, files: _Files, first: _Built
    ) -> None:
        self._settings = settings
        self._http2 = http2
        self._files = files
        self._current = first
        self._refused: tuple[FileStamp | None, ...] | None = None
        self._lock = threading.Lock()
        self.context = first.context

    @classmethod
    def build(
        cls, settings: TlsServerConfig, http2: bool, base_dir: str, problems: list[str]
    ) -> ServerTls | None:
        """The TLS `settings` describe, or None with what is wrong added to `problems`."""
        before = len(problems)
        _check_tls_combinations(settings, http2, problems)
        if len(problems) > before:
            return None
        files = _Files.of(settings, base_dir)
        first = _build(settings, http2, files, problems)
        if first is None:
            return None
        tls = cls(settings, http2, files, first)
        first.context.sni_callback = tls._on_handshake
        return tls

    @property
    def not_after(self) -> float | None:
        """When the certificate served from now on expires, in seconds since the epoch."""
        self.current_context()
        return self._current.not_after

    def current_context(self) -> ssl.SSLContext:
        """The context of the newest good certificate files, checked now."""
        stamps = self._files.stamps()
        with self._lock:
            if stamps not in (self._current.stamps, self._refused):
                self._reload(stamps)
            return self._current.context

    def _reload(self, stamps: tuple[FileStamp | None, ...]) -> None:
        problems: list[str] = []
        built = _build(self._settings, self._http2, self._files, problems)
        if built is None:
            self._refused = stamps
            log.error(
                "TLS certificate files changed but cannot be loaded; serving the last good ones",
                extra={"fields": {"problems": "; ".join(problems)}},
            )
            return
        built.context.sni_callback = self._on_handshake
        self._current = built
        self._refused = None
        log.info("TLS certificate files reloaded", extra={"fields": {"not_after": built.not_after}})

    def _on_handshake(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: Any
    ) -> None:
        try:
            context = self.current_context()
        except Exception as error:  # a handshake never fails for the watcher's sake
            log.error("TLS certificate check failed", extra={"fields": {"error": repr(error)}})
            return
        if connection.context is not context:
            connection.context = context


def _check_tls_combinations(tls: TlsServerConfig, http2: bool, problems: list[str]) -> None:
    """Settings that contradict each other, found before any file is opened."""
    if not tls.cert_file and not tls.cert:
        problems.append(f"{_SECTION}.cert_file: missing one of cert or cert_file")
    if not tls.key_file and not tls.key.get_secret_value():
        problems.append(f"{_SECTION}.key_file: missing one of key or key_file")
    has_ca = bool(tls.client_ca_file or tls.client_ca)
    if has_ca and CLIENT_AUTH_TYPES[tls.client_auth_type] == ssl.CERT_NONE:
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
    _check_cipher_combinations(tls, http2, problems)


def _check_cipher_combinations(tls: TlsServerConfig, http2: bool, problems: list[str]) -> None:
    if not tls.cipher_suites or tls.min_version == "TLS13":
        return
    if http2 and not set(HTTP2_REQUIRED_SUITES) & set(tls.cipher_suites):
        problems.append(
            f"{_SECTION}.cipher_suites: http2: TLSConfig.CipherSuites is missing an "
            "HTTP/2-required AES_128_GCM_SHA256 cipher (need at least one of "
            f"{' or '.join(HTTP2_REQUIRED_SUITES)}); add one or set http_server_config.http2 "
            "to false"
        )
    elif tls.max_version == "TLS12" and set(tls.cipher_suites) <= TLS13_CIPHER_SUITES:
        problems.append(
            f"{_SECTION}.cipher_suites: only TLS 1.3 suites, which TLS 1.2 (max_version) "
            "cannot use; every handshake would fail"
        )


def _build(tls: TlsServerConfig, http2: bool, files: _Files, problems: list[str]) -> _Built | None:
    """A context from the files as they are now; their stamps are taken before they are read,
    so a change made while reading is seen at the next check."""
    before = len(problems)
    stamps = files.stamps()
    cert = _pem("cert_file", files.cert, tls.cert.encode(), problems)
    key = _pem("key_file", files.key, tls.key.get_secret_value().encode(), problems)
    client_ca = _pem("client_ca_file", files.client_ca, tls.client_ca.encode(), problems)
    if len(problems) > before:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_certificate(context, cert, key, files, problems)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    context.verify_mode = CLIENT_AUTH_TYPES[tls.client_auth_type]
    if client_ca:
        _load_client_ca(context, client_ca, files.client_ca, problems)
    elif context.verify_mode != ssl.CERT_NONE:
        context.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # as Go: the system's roots
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
    if len(problems) > before:
        return None
    der = first_certificate_der(cert)
    return _Built(context, stamps, not_after(der) if der is not None else None)


def _pem(key: str, path: str | None, inline: bytes, problems: list[str]) -> bytes:
    """The file's bytes when a file is named (it wins over inline text, as in the toolkit)."""
    if path is None:
        return inline
    try:
        return read_pem_file(path)
    except FileProblem as problem:
        problems.append(f"{_SECTION}.{key}: {problem.about(path)}")
        return b""


def _key(key: str, path: str | None) -> str:
    """The key a problem is about: the file key when a file was read, else the inline key."""
    return f"{_SECTION}.{key}_file" if path else f"{_SECTION}.{key}"


def _in(path: str | None) -> str:
    return f" in {path}" if path else ""


def _load_certificate(
    context: ssl.SSLContext, cert: bytes, key: bytes, files: _Files, problems: list[str]
) -> None:
    cert_key, key_key = _key("cert", files.cert), _key("key", files.key)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=cert.decode())
    except (ssl.SSLError, ValueError):  # ValueError: not UTF-8, or no text at all
        problems.append(f"{cert_key}: no PEM certificate{_in(files.cert)}")
        return
    try:
        with private_path(cert) as cert_path, private_path(key) as key_path:
            context.load_cert_chain(cert_path, key_path, password=_refuse_passphrase)
    except _EncryptedKey:
        problems.append(
            f"{key_key}: {files.key or 'the key'} is encrypted with a passphrase, which is not "
            "supported; store the key unencrypted, readable only by the exporter"
        )
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            problems.append(
                f"{key_key}: the key{_in(files.key)} does not belong to "
                f"the certificate{_in(files.cert)}"
            )
        else:
            problems.append(f"{key_key}: no PEM private key{_in(files.key)}")


def _load_client_ca(
    context: ssl.SSLContext, pem: bytes, path: str | None, problems: list[str]
) -> None:
    try:
        context.load_verify_locations(cadata=pem.decode())
    except (ssl.SSLError, ValueError):  # not UTF-8, or not PEM either
        problems.append(f"{_key('client_ca', path)}: no PEM certificate{_in(path)}")


def _set_cipher_suites(context: ssl.SSLContext, names: list[str], problems: list[str]) -> None:
    """TLS 1.2 suites as listed; TLS 1.3 names are ignored as Go ignores them. A list of TLS
    1.3 names only leaves TLS 1.2 without a suite, so TLS 1.3 is the least version."""
    below_tls13 = [(index, name) for index, name in enumerate(names) if name in CIPHER_SUITES]
    if not below_tls13:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        return
    try:
        context.set_ciphers(":".join(CIPHER_SUITES[name] for _, name in below_tls13))
    except ssl.SSLError:
        available: set[str] = set()
    else:
        available = {cipher["name"] for cipher in context.get_ciphers()}
    for index, name in below_tls13:
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


# --- client_allowed_sans -------------------------------------------------------------


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
