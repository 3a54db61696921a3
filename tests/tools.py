"""Locating the real tools some tests need (promtool, prometheus, chromium, ...)."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def require_tool(name: str) -> str:
    """Return the tool's path; skip when it is missing, unless under CI where that fails."""
    path = shutil.which(name)
    if path is None:
        venv_bin = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv", "bin")
        candidate = os.path.join(venv_bin, name)
        if os.access(candidate, os.X_OK):
            return candidate
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI but is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
