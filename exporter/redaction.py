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
# In a log line's text: the value after a name that says it is secret (`token=`, `password:`,
# `client_secret = "..."`), AWS access key ids, e-mail addresses and runs of digits as long
# as a phone number. Each is tried only where it can start (after a word's end, at its
# keyword), so a line is read once however long its words are.
_SECRET_VALUE = re.compile(
    r"(?i)((?:token|password|passwd|pwd|secret|key|credentials?|authorization)s?\s{0,3}"
    r"[=:]\s{0,3})(\"[^\"\n]{0,100}\"|'[^'\n]{0,100}'|[^\s\"'<>,;&]+)"
)
_ACCESS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w+])\+?(?:\d[\s().-]{0,2}){6,}\d")
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


def redact_user_data(text: str) -> str:
    """`text` from a log, with what could be a user's data or a secret replaced: values
    named as secrets, access key ids, e-mail addresses, phone numbers; URLs first, whole (a
    URL's user and password would read as an address)."""
    text = _URL.sub("<url>", text)
    text = _SECRET_VALUE.sub(rf"\1{REDACTED}", text)
    text = _ACCESS_KEY_ID.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def safe_traceback(error: BaseException) -> str:
    """Where `error` was raised, frame by frame (file, line, function), then its safe text;
    the source lines and the rest of the message are left out."""
    frames = traceback.extract_tb(error.__traceback__)
    where = [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]
    return " <- ".join(reversed(where)) + f": {type(error).__name__}: {safe_error_text(error)}"
