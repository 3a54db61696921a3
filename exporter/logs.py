"""Log lines in logfmt or JSON, one per event, with the event's fields as keys.

Callers pass fields with `extra={"fields": {...}}`; nothing else of the record is rendered,
so no object's repr (which could hold a secret) reaches the log by accident. Every value has
the secrets the exporter holds replaced and its control characters escaped, so no line can
carry a credential or forge another line. Libraries log at warning and above only, whatever
the exporter's own level: at debug, botocore, urllib3, h2 and hpack write request headers.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from exporter.redaction import SECRETS, safe_error_text, safe_traceback

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn"}


def _fields(record: logging.LogRecord, *, tracebacks: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": _LEVEL_NAMES.get(record.levelno, "error"),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    extra = getattr(record, "fields", None)
    if isinstance(extra, Mapping):
        fields.update(extra)
    if record.exc_info and record.exc_info[0] is not None:
        fields["error_type"] = record.exc_info[0].__name__
        if tracebacks and record.exc_info[1] is not None:
            fields["traceback"] = safe_traceback(record.exc_info[1])
    return {
        key: SECRETS(value) if isinstance(value, str) else value for key, value in fields.items()
    }


class LogfmtFormatter(logging.Formatter):
    """`tracebacks`: where an exception was raised goes with its line (debug only)."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record, tracebacks=self.tracebacks)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


class JsonFormatter(LogfmtFormatter):
    def format(self, record: logging.LogRecord) -> str:
        # ASCII: line and paragraph separators and other Unicode controls come out escaped
        return json.dumps(
            _fields(record, tracebacks=self.tracebacks), default=str, ensure_ascii=True
        )


_LOGFMT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _logfmt_value(value: Any) -> str:
    text = "" if value is None else str(value)
    if text and not any(char in text for char in ' ="\\') and text.isprintable():
        return text
    escaped = "".join(_LOGFMT_ESCAPES.get(char) or _escaped(char) for char in text)
    return f'"{escaped}"'


def _escaped(char: str) -> str:
    if char.isprintable() or char == " ":
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class _LibrariesAtWarning(logging.Filter):
    """Records of loggers other than the exporter's pass at warning and above only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] == "exporter"


def _log_thread_failure(failure: threading.ExceptHookArgs) -> None:
    """A thread that fails logs one line; at debug with where it failed, never with a
    message or source text that could carry a secret."""
    logging.getLogger("exporter").error(
        "a background thread failed",
        exc_info=(failure.exc_type, failure.exc_value, failure.exc_traceback)
        if failure.exc_value is not None
        else None,
        extra={
            "fields": {
                "thread": failure.thread.name if failure.thread else "",
                "error_type": failure.exc_type.__name__,
                "error": safe_error_text(failure.exc_value) if failure.exc_value else "",
            }
        },
    )


def configure(level: str, fmt: str, stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    tracebacks = LEVELS[level] <= logging.DEBUG
    handler.setFormatter(
        JsonFormatter(tracebacks) if fmt == "json" else LogfmtFormatter(tracebacks)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    handler.addFilter(_LibrariesAtWarning())
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # the filter decides; these levels only spare the work of building records nobody sees
    for noisy in ("botocore", "boto3", "urllib3", "h2", "h11", "hpack", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    threading.excepthook = _log_thread_failure
