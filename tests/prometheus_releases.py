"""The Prometheus releases the tests run against: Debian stable's 2.x on PATH and 3.x from
Debian unstable, unpacked into .cache/prometheus3/ by scripts/install/20-prometheus3.sh.

Each release is its pair of binaries, `prometheus` and `promtool`, whose version is checked:
a 2.x binary standing where 3.x is expected would let the 3.x tests pass without testing it.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS3_BIN = REPO / ".cache" / "prometheus3" / "usr" / "bin"
MAJOR_VERSIONS = (2, 3)
VERSION_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class PrometheusRelease:
    """The prometheus and promtool binaries of one major version."""

    major: int
    prometheus: str
    promtool: str


def binary_version(path: str) -> str:
    """The version a Prometheus binary prints, e.g. 3.5.3+ds1."""
    output = subprocess.run(
        [path, "--version"],
        capture_output=True,
        text=True,
        timeout=VERSION_TIMEOUT_SECONDS,
        check=True,
    ).stdout
    match = re.search(r"version (\S+)", output)
    assert match is not None, f"{path} --version printed no version: {output!r}"
    return match.group(1)


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI, where every release must be there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def cached_binary(name: str) -> str:
    path = PROMETHEUS3_BIN / name
    if not os.access(path, os.X_OK):
        unavailable(f"{path} is missing: run scripts/install/20-prometheus3.sh")
    return str(path)


@functools.cache
def wrong_versions(major: int, binaries: tuple[str, ...]) -> list[str]:
    versions = {path: binary_version(path) for path in binaries}
    return [f"{path} is {v}" for path, v in versions.items() if v.split(".")[0] != str(major)]


def release_of(major: int) -> PrometheusRelease:
    """The binaries of Prometheus `major`.x; the test skips (fails under CI) without them."""
    if major == 3:
        prometheus, promtool = cached_binary("prometheus"), cached_binary("promtool")
    else:
        prometheus, promtool = require_tool("prometheus"), require_tool("promtool")
    wrong = wrong_versions(major, (prometheus, promtool))
    if wrong:
        unavailable(f"Prometheus {major}.x wanted, but {', '.join(wrong)}")
    return PrometheusRelease(major, prometheus, promtool)
