"""`client_allowed_sans`: a verified client certificate is refused unless one of its subject
alternative names is listed, as the toolkit's VerifyPeerCertificate does."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

log = logging.getLogger(__name__)


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
    of `allowed_sans`. asyncio wraps the server's connections with wrap_bio(),
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


def san_checking_class(allowed: Iterable[str]) -> type[ssl.SSLObject]:
    return type(
        "SanCheckingSSLObject", (_SanCheckingSSLObject,), {"allowed_sans": frozenset(allowed)}
    )
