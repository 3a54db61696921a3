"""An unexpected exception: one line at every level, with where it was raised at debug, and
never the secrets its message or the code around it could carry."""

from __future__ import annotations

import io
import json
import threading

import pytest

from exporter.logs import configure
from exporter.redaction import SECRETS

PLANTED = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTEDKEY"


def _fail_in_a_thread() -> None:
    def crash() -> None:
        raise RuntimeError(f"secret {PLANTED} inside\nand a second line")

    thread = threading.Thread(target=crash, name="crasher")
    thread.start()
    thread.join()


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_debug_shows_where_an_unexpected_exception_was_raised_and_no_secret(fmt: str) -> None:
    SECRETS.add([PLANTED])
    stream = io.StringIO()
    configure("debug", fmt, stream)
    try:
        _fail_in_a_thread()
    finally:
        configure("warn", "logfmt", io.StringIO())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = lines[0] if fmt == "logfmt" else json.loads(lines[0])["traceback"]
    assert "test_logs.py" in line
    assert " in crash" in line
    assert "RuntimeError: secret <redacted> inside" in line
    assert PLANTED not in stream.getvalue()
    assert "a second line" not in stream.getvalue()


def test_above_debug_an_unexpected_exception_is_one_line_without_its_frames() -> None:
    stream = io.StringIO()
    configure("info", "logfmt", stream)
    try:
        _fail_in_a_thread()
    finally:
        configure("warn", "logfmt", io.StringIO())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "a background thread failed" in lines[0]
    assert "thread=crasher" in lines[0]
    assert "error_type=RuntimeError" in lines[0]
    assert "traceback" not in lines[0]
    assert "test_logs.py" not in lines[0]
