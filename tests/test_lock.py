"""The lock files: what the image installs (requirements.lock) and what the tests run on
(requirements-test.lock) pin every dependency within pyproject.toml's bounds, with hashes, at the
same versions; and pyproject.toml's lower bounds hold: the project installed at the lowest
versions they allow passes a quick subset of the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.tools import require_tool

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = REPO / "requirements.lock"
TEST_LOCK = REPO / "requirements-test.lock"
PYPROJECT = REPO / "pyproject.toml"

# Tests that exercise the dependencies' public and private parts the exporter builds on:
# botocore's parser and retries, h11's and h2's connections, pydantic's schema, the client library.
LOWEST_VERSIONS_TESTS = (
    "tests/test_config.py",
    "tests/test_cognito.py",
    "tests/test_history.py",
    "tests/test_server.py",
    "tests/test_connections.py",
)
# A timing test: it measures how loaded the machine is, not the versions installed.
LOWEST_VERSIONS_DESELECTED = (
    "tests/test_server.py::test_a_large_answer_is_written_within_the_scrape_timeout",
)
# What the subset needs beyond the project itself.
LOWEST_VERSIONS_TEST_TOOLS = (
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "requests",
    "trustme",
    "psutil",
)


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset[str]


def pins(lock: Path) -> dict[str, Pin]:
    """Each pinned distribution of a `--generate-hashes` lock file (markers dropped)."""
    found: dict[str, Pin] = {}
    text = lock.read_text(encoding="utf-8")
    for entry in re.split(r"\n(?=\S)", text):
        head = entry.split(";")[0].split("\\")[0].strip()
        if not head or head.startswith("#"):
            continue
        name, sep, version = head.partition("==")
        assert sep, f"{lock.name}: {head!r} is not pinned with =="
        found[canonicalize_name(name)] = Pin(
            version.strip(), frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
        )
    return found


def declared(extra: str | None = None) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    names = project["dependencies"]
    if extra is not None:
        names = names + project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


def out_of_bounds(requirements: list[Requirement], pinned: dict[str, Pin]) -> dict[str, str]:
    return {
        req.name: pinned[canonicalize_name(req.name)].version
        if canonicalize_name(req.name) in pinned
        else "missing"
        for req in requirements
        if canonicalize_name(req.name) not in pinned
        or not req.specifier.contains(pinned[canonicalize_name(req.name)].version)
    }


def test_runtime_lock_pins_every_dependency_within_its_bounds() -> None:
    assert out_of_bounds(declared(), pins(RUNTIME_LOCK)) == {}


def test_test_lock_pins_every_test_dependency_within_its_bounds() -> None:
    assert out_of_bounds(declared("test"), pins(TEST_LOCK)) == {}


def test_every_pin_carries_hashes() -> None:
    unhashed = [
        f"{lock.name}: {name}"
        for lock in (RUNTIME_LOCK, TEST_LOCK)
        for name, pin in pins(lock).items()
        if not pin.hashes
    ]
    assert unhashed == []


def test_tests_run_on_exactly_what_the_image_ships() -> None:
    runtime = pins(RUNTIME_LOCK)
    tested = pins(TEST_LOCK)
    assert {name: tested.get(name) for name in runtime} == runtime


def test_private_parts_in_use_are_bounded_below_the_next_minor() -> None:
    """The exporter subclasses botocore's JSON parser; h11 and h2 are used through their
    documented API, bounded below their next major release."""
    bounds = {req.name: str(req.specifier) for req in declared()}
    assert {name: bounds[name] for name in ("boto3", "botocore", "h11", "h2")} == {
        "boto3": "<1.45,>=1.44",
        "botocore": "<1.45,>=1.44",
        "h11": "<1,>=0.16",
        "h2": "<5,>=4.1",
    }


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_lowest_allowed_versions_pass_the_quick_tests(tmp_path: Path) -> None:
    uv = require_tool("uv")
    venv = tmp_path / "lowest"
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}

    def uv_run(*args: str) -> str:
        result = subprocess.run(
            [uv, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    uv_run("venv", "--quiet", "--python", sys.executable, str(venv))
    uv_run("pip", "install", "--quiet", "--resolution", "lowest-direct", "-e", str(REPO))
    installed = tmp_path / "installed.txt"
    installed.write_text(uv_run("pip", "freeze", "--exclude-editable"), encoding="utf-8")
    # The test tools may not move the project's dependencies off their lowest versions.
    uv_run("pip", "install", "--quiet", "-c", str(installed), *LOWEST_VERSIONS_TEST_TOOLS)
    lowest = {
        canonicalize_name(name): version
        for name, _, version in (
            line.partition("==") for line in installed.read_text().splitlines() if "==" in line
        )
    }
    lower_bounds = {
        req.name: next(s.version for s in req.specifier if s.operator == ">=") for req in declared()
    }

    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *LOWEST_VERSIONS_TESTS,
            *(f"--deselect={test}" for test in LOWEST_VERSIONS_DESELECTED),
        ],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )

    assert {name: Version(lowest[canonicalize_name(name)]) for name in lower_bounds} == {
        name: Version(version) for name, version in lower_bounds.items()
    }
    assert result.returncode == 0, result.stdout[-4000:]
    assert re.search(r"\b\d+ passed", result.stdout), result.stdout[-2000:]
