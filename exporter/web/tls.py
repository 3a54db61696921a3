"""The web config's `tls_server_config`: its fields, the settings that contradict each other,
and the server context they make (certificates, client CAs, versions, cipher suites, curves,
`client_allowed_sans`)."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, SecretStr, field_validator

from exporter.config.files import MAX_CONFIG_BYTES, FileProblem, read_regular_file
from exporter.config.problems import quoted
from exporter.config.schema import ExactModel

log = logging.getLogger(__name__)

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
CURVES: dict[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
_SECTION = "tls_server_config"


# --- the section ------------------------------------------------------------------


_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
_TLS13_CIPHER_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)


# The toolkit allows these response headers only, some with a fixed set of values.
def _one_of(names: Iterable[str]) -> str:
    return ", ".join(names)


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
    if value in _TLS13_CIPHER_SUITES:
        raise ValueError(
            f"{value} is a TLS 1.3 suite; TLS 1.3 suites cannot be configured, "
            "cipher_suites applies to TLS 1.2 and below"
        )
    if value not in CIPHER_SUITES:
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


# --- the server context --------------------------------------------------------------


class _EncryptedKey(Exception):
    pass


def _refuse_passphrase() -> bytes:
    """Called by OpenSSL only for an encrypted key; never prompt on the terminal."""
    raise _EncryptedKey


def build_server_context(
    tls: TlsServerConfig, http2: bool, base_dir: str, problems: list[str]
) -> ssl.SSLContext | None:
    """The server context `tls` describes, or None with what is wrong added to `problems`."""
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


def _check_tls_combinations(tls: TlsServerConfig, problems: list[str]) -> None:
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
    """A regular file of a sane size: the ssl module would block on a FIFO or read a device
    without end."""
    try:
        read_regular_file(path, MAX_CONFIG_BYTES)
    except FileProblem as problem:
        problems.append(f"{where}: {problem.about(path)}")


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
    except (ssl.SSLError, ValueError, TypeError):  # empty or non-ASCII text: not PEM either
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
