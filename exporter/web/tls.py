"""The web config's `tls_server_config`: its fields, their names as Go spells them, and the
settings that contradict each other (`exporter.web.server_tls` makes the server context)."""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Annotated

from pydantic import AfterValidator, SecretStr, field_validator

from exporter.config.problems import quoted
from exporter.config.schema import ExactModel

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


# --- settings checked together --------------------------------------------------


def check_tls_combinations(tls: TlsServerConfig, http2: bool, problems: list[str]) -> None:
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
