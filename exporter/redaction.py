"""Secrets kept out of every text the exporter logs, exports or shows.

The secrets of the loaded configurations (secret keys, session tokens, external ids) are
replaced by value; temporary credentials, which the exporter never sees as text, by their
shape: AWS secret keys and session tokens are runs of 40 or more base64 characters, which
no message the exporter needs contains. Error texts also lose every URL (an answer's text
could carry a pre-signed upload URL), and every text loses the signing parameters of any
pre-signed URL it holds.
"""

from __future__ import annotations

import re
import threading
import traceback
from collections.abc import Iterable

REDACTED = "<redacted>"
# a scheme starts where a word starts: tried inside a long word, it would read the rest of
# the word again from every letter (hours for a log line of a few hundred kB)
_URL = re.compile(r"(?<!\w)\w+://[^\s\"'<>]+")
_CREDENTIAL_SHAPE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
# what makes a pre-signed URL grant anything, with or without its scheme, encoded or not
_SIGNING_PARAMETER = re.compile(
    r"(?i)((?:X-Amz-(?:Signature|Security-Token|Credential)|Signature|AWSAccessKeyId)"
    r"(?:=|%3D))[^&\s\"'<>]+"
)
# a secret this short is replaced only where it stands alone, not inside a longer word
SHORT_SECRET_LENGTH = 8
MAX_ERROR_TEXT = 300


class Redactor:
    """Replaces every secret it was told of; grows with each configuration loaded, since
    texts made under an older one may still be on their way out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            known = self._secrets | {secret for secret in secrets if secret}
            if known == self._secrets:
                return
            self._secrets = known
            ordered = sorted(known, key=len, reverse=True)
            self._pattern = re.compile("|".join(_pattern_of(secret) for secret in ordered))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        text = _SIGNING_PARAMETER.sub(rf"\1{REDACTED}", text)
        return _CREDENTIAL_SHAPE.sub(REDACTED, text)


def _pattern_of(secret: str) -> str:
    escaped = re.escape(secret)
    if len(secret) >= SHORT_SECRET_LENGTH:
        return escaped
    return rf"(?<![A-Za-z0-9]){escaped}(?![A-Za-z0-9])"


SECRETS = Redactor()


def safe_error_text(error: BaseException) -> str:
    """A short reason for logs and the status page: the first line of the error's text (or
    its type), with URLs, secrets and anything unprintable taken out."""
    lines = str(error).splitlines()
    text = lines[0] if lines and lines[0].strip() else type(error).__name__
    return safe_text(text)


def safe_text(text: str, limit: int = MAX_ERROR_TEXT) -> str:
    """`text` cut to `limit` characters, with URLs and secrets taken out and anything
    unprintable (control characters, lone surrogates) escaped."""
    text = SECRETS(_URL.sub("<url>", text))[:limit]
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


def safe_traceback(error: BaseException) -> str:
    """Where `error` was raised, frame by frame (file, line, function), then its safe text;
    the source lines and the rest of the message are left out."""
    frames = traceback.extract_tb(error.__traceback__)
    where = [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]
    return " <- ".join(reversed(where)) + f": {type(error).__name__}: {safe_error_text(error)}"
