"""The Dockerfile: its lint, its declared contract and its build context, read from the file.
tests/test_image.py builds it and runs the image."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__
from tests.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

INSTALL_TIMEOUT_SECONDS = 600
READY_DEADLINE_SECONDS = 30.0
EXIT_DEADLINE_SECONDS = 10.0


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]
    args: str


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [ins for ins in self.instructions if ins.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_instruction(line: str) -> Instruction:
    keyword, _, rest = line.partition(" ")
    rest = rest.strip()
    flags: list[str] = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.strip()
    return Instruction(keyword.upper(), tuple(flags), rest)


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    base = ""
    name: str | None = None
    body: list[Instruction] = []
    for line in logical_lines(text):
        ins = parse_instruction(line)
        if ins.keyword != "FROM":
            assert base, f"{ins.keyword} before the first FROM is not used by this Dockerfile"
            body.append(ins)
            continue
        if base:
            stages.append(Stage(base, name, tuple(body)))
        words = ins.args.split()
        base = words[0]
        name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
        body = []
    stages.append(Stage(base, name, tuple(body)))
    return stages


def exec_form(ins: Instruction) -> list[str]:
    value = json.loads(ins.args)
    assert isinstance(value, list), f"{ins.keyword} is not in exec (JSON) form"
    return [str(item) for item in value]


def key_values(ins: Instruction) -> dict[str, str]:
    """The key=value pairs of an ARG, ENV or LABEL, quotes removed, variables unexpanded."""
    pairs: dict[str, str] = {}
    for word in shlex.split(ins.args):
        key, sep, value = word.partition("=")
        assert sep or ins.keyword == "ARG", f"{ins.keyword} {ins.args!r} is not key=value"
        pairs[key] = value
    return pairs


def expand(value: str, variables: dict[str, str]) -> str:
    """Docker's $VAR / ${VAR} substitution; unset variables become empty."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: variables.get(m.group(1) or m.group(2), ""),
        value,
    )


def stage_args(stage: Stage) -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in stage.all("ARG"):
        args.update(key_values(ins))
    return args


def final_stage() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text())[-1]


# --- lint and the declared contract ---------------------------------------------------------


@pytest.mark.slow
def test_hadolint_reports_nothing_at_info_level() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_stages_build_on_debians_slim_image_and_its_python() -> None:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    assert [(stage.base, stage.name) for stage in stages] == [
        ("docker.io/library/debian:bookworm-slim", "runtime-base"),
        ("runtime-base", "build"),
        ("runtime-base", None),
    ]


def test_final_stage_runs_as_non_root_numeric_user() -> None:
    assert final_stage().last("USER").args == "65532:65532"


def test_final_stage_entrypoint_cmd_and_port() -> None:
    stage = final_stage()
    assert exec_form(stage.last("ENTRYPOINT")) == ["/opt/venv/bin/cognito-import-exporter"]
    assert exec_form(stage.last("CMD")) == [
        "--config.file=/etc/cognito-import-exporter/config.yaml"
    ]
    assert [ins.args for ins in stage.all("EXPOSE")] == ["10209"]


def test_final_stage_oci_labels_carry_the_package_version() -> None:
    stage = final_stage()
    args = stage_args(stage)
    labels: dict[str, str] = {}
    for ins in stage.all("LABEL"):
        labels.update({k: expand(v, args) for k, v in key_values(ins).items()})
    assert labels == {
        "org.opencontainers.image.title": "cognito-import-exporter",
        "org.opencontainers.image.description": (
            "Prometheus exporter for Amazon Cognito user pool import jobs"
        ),
        "org.opencontainers.image.source": args["SOURCE"],
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.version": __version__,
    }
    assert labels["org.opencontainers.image.source"].startswith("https://")


def test_final_stage_python_environment() -> None:
    env: dict[str, str] = {}
    for ins in final_stage().all("ENV"):
        env.update(key_values(ins))
    assert {k: env.get(k) for k in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")} == {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    assert env["PATH"] == "/opt/venv/bin:${PATH}"


def pip_calls() -> list[str]:
    runs = [
        ins.args for stage in parse_dockerfile(DOCKERFILE.read_text()) for ins in stage.all("RUN")
    ]
    return [cmd.strip() for run in runs for cmd in run.split("&&") if re.search(r"\bpip\b", cmd)]


def test_every_pip_install_disables_the_cache_and_dependencies_come_from_the_lock() -> None:
    installs = [cmd.split() for cmd in pip_calls() if " install " in cmd]
    assert [("--no-cache-dir" in words) for words in installs] == [True, True]
    assert installs[0][-3:] == ["--require-hashes", "-r", "/src/requirements.lock"]
    assert "--no-deps" in installs[1]


def test_final_stage_copies_only_the_virtualenv() -> None:
    copies = [(ins.flags, ins.args) for ins in final_stage().all("COPY")]
    assert copies == [(("--from=build",), "/opt/venv/ /opt/venv/")]


# --- .dockerignore --------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ** spans directories, * and ? stay within one."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def dockerignore_matcher(text: str) -> Callable[[str], bool]:
    """Whether a context-relative path is left out: the last matching pattern decides."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = posixpath.normpath(pattern.lstrip("!").strip()).lstrip("/")
        rules.append((negated, glob_regex(pattern)))

    def ignored(relative: str) -> bool:
        parts = relative.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negated, regex in rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                result = not negated
        return result

    return ignored


def test_dockerignore_keeps_build_inputs_and_drops_local_state() -> None:
    ignored = dockerignore_matcher(DOCKERIGNORE.read_text())
    paths = [
        "pyproject.toml",
        "README.md",
        "exporter/__init__.py",
        "exporter/cli.py",
        ".git/HEAD",
        ".venv/bin/python",
        "exporter/__pycache__/cli.cpython-312.pyc",
        "cognito_import_exporter.egg-info/PKG-INFO",
        ".pytest_cache/README.md",
        ".mypy_cache/3.12/exporter/cli.meta.json",
        "bench/results/latest.json",
        "tests/test_container.py",
        "requirements.lock",
        "requirements-test.lock",
        ".cache/images/debian-bookworm-slim.tar",
    ]
    assert {path: ignored(path) for path in paths} == {
        "pyproject.toml": False,
        "README.md": False,
        "exporter/__init__.py": False,
        "exporter/cli.py": False,
        ".git/HEAD": True,
        ".venv/bin/python": True,
        "exporter/__pycache__/cli.cpython-312.pyc": True,
        "cognito_import_exporter.egg-info/PKG-INFO": True,
        ".pytest_cache/README.md": True,
        ".mypy_cache/3.12/exporter/cli.meta.json": True,
        "bench/results/latest.json": True,
        "tests/test_container.py": True,
        "requirements.lock": False,
        "requirements-test.lock": True,
        ".cache/images/debian-bookworm-slim.tar": True,
    }
