"""Certificates and keys as bytes: read from bounded regular files or given inline, handed to
OpenSSL through a private in-memory file, their expiry read, their files' identity taken."""

from __future__ import annotations

import calendar
import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from exporter.config.files import MAX_CONFIG_BYTES, read_regular_file

_PEM_CERTIFICATE_START = b"-----BEGIN CERTIFICATE-----"
_PEM_CERTIFICATE_END = b"-----END CERTIFICATE-----"
_UTC_TIME, _GENERALIZED_TIME, _CONTEXT_0 = 0x17, 0x18, 0xA0


@dataclass(frozen=True)
class FileStamp:
    """What tells one version of a file from another without reading it: the file it is
    (device and inode, so a renamed-in or re-linked file counts as new) and its mtime and size
    (so a file rewritten in place counts as new)."""

    device: int
    inode: int
    mtime_ns: int
    size: int


def file_stamp(path: str) -> FileStamp | None:
    """The stamp of the file at `path` (links followed), None when it cannot be seen."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return FileStamp(status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size)


def read_pem_file(path: str) -> bytes:
    """A certificate or key file's bytes: a regular file of at most MAX_CONFIG_BYTES
    (FileProblem otherwise), never a FIFO or device the ssl module would block on."""
    return read_regular_file(path, MAX_CONFIG_BYTES)


@contextlib.contextmanager
def private_path(data: bytes) -> Iterator[str]:
    """A file name holding `data` that only this process can open, for OpenSSL's loaders that
    take file names only; the file is gone when the block ends. An anonymous in-memory file
    where Linux has one, otherwise a temporary file created exclusively with mode 600."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        descriptor = os.memfd_create("tls", os.MFD_CLOEXEC)
        try:
            _write_all(descriptor, data)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    descriptor, path = tempfile.mkstemp(prefix="tls-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        yield path
    finally:
        os.unlink(path)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def first_certificate_der(pem: bytes) -> bytes | None:
    """The DER bytes of the first PEM certificate in `pem` (a chain's leaf)."""
    start = pem.find(_PEM_CERTIFICATE_START)
    end = pem.find(_PEM_CERTIFICATE_END, start)
    if start < 0 or end < 0:
        return None
    block = pem[start : end + len(_PEM_CERTIFICATE_END)]
    try:
        return ssl.PEM_cert_to_DER_cert(block.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def not_after(der: bytes) -> float | None:
    """When an X.509 certificate (DER) expires, in seconds since the epoch: the second time of
    its tbsCertificate's validity, after version, serial number, signature and issuer."""
    try:
        _, tbs, _ = _element(der, _element(der, 0)[1])
        offset = tbs
        tag, _, end = _element(der, offset)
        if tag == _CONTEXT_0:  # the optional version
            offset = end
        for _ in range(3):  # serialNumber, signature, issuer
            offset = _element(der, offset)[2]
        validity = _element(der, offset)[1]
        tag, start, end = _element(der, _element(der, validity)[2])
        return _asn1_time(tag, der[start:end].decode("ascii"))
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _element(der: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end) of the DER element at `offset`."""
    tag, length = der[offset], der[offset + 1]
    header = 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[offset + 2 : offset + 2 + count], "big")
        header += count
    end = offset + header + length
    if end > len(der):
        raise IndexError("element past the end")
    return tag, offset + header, end


def _asn1_time(tag: int, text: str) -> float:
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ, years 1950 to 2049 (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != _GENERALIZED_TIME:
        raise ValueError("not a time")
    if len(text) != 15 or not text.endswith("Z") or not text[:14].isdigit():
        raise ValueError("not a UTC time")
    fields = (int(text[0:4]), int(text[4:6]), int(text[6:8]))
    clock = (int(text[8:10]), int(text[10:12]), int(text[12:14]))
    return float(calendar.timegm((*fields, *clock, 0, 0, 0)))
