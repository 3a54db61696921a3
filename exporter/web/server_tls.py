"""The server context a `tls_server_config` describes (certificates, client CAs, versions,
cipher suites, curves, `client_allowed_sans`), rebuilt when its certificate, key or client CA
files change."""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from exporter.config.files import FileProblem
from exporter.web.certificates import (
    FileStamp,
    file_stamp,
    first_certificate_der,
    not_after,
    private_path,
    read_pem_file,
)
from exporter.web.client_sans import san_checking_class
from exporter.web.tls import (
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    CURVES,
    TLS_VERSIONS,
    TlsServerConfig,
    check_tls_combinations,
)

log = logging.getLogger(__name__)
_SECTION = "tls_server_config"


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
        check_tls_combinations(settings, http2, problems)
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
        try:
            built = _build(self._settings, self._http2, self._files, problems)
        except Exception as error:  # nothing the files hold may fail a handshake or a scrape
            built = None
            problems.append(f"unexpected {type(error).__name__}")
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
        context.sslobject_class = san_checking_class(tls.client_allowed_sans)
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
        with private_path(cert) as cert_path:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_path)
    except ssl.SSLError:
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
        with private_path(pem) as pem_path:
            context.load_verify_locations(cafile=pem_path)
    except ssl.SSLError:
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
