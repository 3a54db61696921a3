"""The container image: the Dockerfile's lint, its declared contract, and its install steps.

There is no container engine in the test environment, so the install tests follow the
Dockerfile itself: each stage gets a temporary directory standing in for its filesystem,
absolute paths in RUN and ENV are mapped into it, COPY honours .dockerignore, and a fresh
virtualenv stands in for the python base image. The resulting entrypoint is then run.
These tests install the project's dependencies from PyPI (tens of seconds).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__
from tests.tools import free_port, require_tool, wait_until

pytestmark = pytest.mark.slow

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


def test_hadolint_reports_nothing_at_info_level() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_both_stages_use_the_same_pinned_slim_python() -> None:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    assert [(stage.base, stage.name) for stage in stages] == [
        ("python:3.12-slim-bookworm", "build"),
        ("python:3.12-slim-bookworm", None),
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


def test_every_pip_call_disables_the_cache() -> None:
    runs = [
        ins.args for stage in parse_dockerfile(DOCKERFILE.read_text()) for ins in stage.all("RUN")
    ]
    pip_calls = [cmd for run in runs for cmd in run.split("&&") if re.search(r"\bpip\b", cmd)]
    assert len(pip_calls) == 2
    assert [("--no-cache-dir" in cmd.split()) for cmd in pip_calls] == [True, True]


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
    }


# --- the Dockerfile's steps, run in virtualenvs -----------------------------------------------


def map_paths(text: str, root: Path) -> str:
    """Absolute paths (at a word start, after a quote, = or :) moved under the stage's root."""
    return re.sub(r"(?<![^\s\"'=:])/(?=[\w.])", f"{root}/", text)


def copy_tree(source: Path, target: Path, skip: Callable[[Path], bool]) -> None:
    if source.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for child in sorted(source.iterdir()):
            if not skip(child):
                copy_tree(child, target / child.name, skip)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@dataclass(frozen=True)
class BuiltStage:
    root: Path
    env: dict[str, str]


def run_stage(
    stage: Stage, root: Path, base_env: dict[str, str], built: dict[str, BuiltStage]
) -> BuiltStage:
    """Carry out one stage's build instructions with `root` standing in for its filesystem."""
    ignored = dockerignore_matcher(DOCKERIGNORE.read_text())

    def outside_context(path: Path) -> bool:
        return ignored(path.relative_to(REPO).as_posix())

    def keep_all(_path: Path) -> bool:
        return False

    skip: Callable[[Path], bool]

    root.mkdir(parents=True)
    env = dict(base_env)
    # Stands in for /root/.cache, so a pip cache left behind shows up in the stage's root.
    env["XDG_CACHE_HOME"] = str(root / "root" / ".cache")
    args: dict[str, str] = {}
    workdir = "/"
    for ins in stage.instructions:
        if ins.keyword == "ARG":
            args.update(key_values(ins))
        elif ins.keyword == "ENV":
            for key, value in key_values(ins).items():
                env[key] = expand(map_paths(value, root), {**args, **env})
        elif ins.keyword == "WORKDIR":
            workdir = posixpath.join(workdir, expand(ins.args, {**args, **env}))
            (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            assert all(flag.startswith("--from=") for flag in ins.flags), ins.flags
            *sources, target = shlex.split(ins.args)
            into = root / posixpath.join(workdir, target).lstrip("/")
            for source in sources:
                if ins.flags:
                    origin = built[ins.flags[0].removeprefix("--from=")].root
                    path = origin / source.lstrip("/")
                    skip = keep_all
                else:
                    path = REPO / source
                    skip = outside_context
                    assert not outside_context(path), f"COPY {source}: excluded by .dockerignore"
                assert path.exists(), f"COPY {source}: not found"
                into_directory = target.endswith("/") or len(sources) > 1
                if path.is_file() and into_directory:
                    copy_tree(path, into / path.name, skip)
                else:
                    copy_tree(path, into, skip)
        elif ins.keyword == "RUN":
            assert not ins.flags, f"RUN {ins.flags} cannot be emulated"
            result = subprocess.run(
                ["/bin/sh", "-c", map_paths(ins.args, root)],
                cwd=root / workdir.lstrip("/"),
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"RUN {ins.args}\n{result.stdout}\n{result.stderr}"
        else:
            assert ins.keyword in {"LABEL", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "HEALTHCHECK"}
    return BuiltStage(root, env)


@dataclass(frozen=True)
class InstalledImage:
    root: Path
    entrypoint: list[str]
    env: dict[str, str]


@pytest.fixture(scope="module")
def installed_image(tmp_path_factory: pytest.TempPathFactory) -> InstalledImage:
    """The final stage built from the Dockerfile, the python image replaced by a venv."""
    work = tmp_path_factory.mktemp("image")
    assert not re.search(r"\s", str(work)), "paths are substituted into shell commands"
    base = work / "python-image"
    subprocess.run([sys.executable, "-m", "venv", str(base)], check=True)
    base_env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "XDG_CACHE_HOME"}
    }
    base_env["PATH"] = f"{base / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

    built: dict[str, BuiltStage] = {}
    stages = parse_dockerfile(DOCKERFILE.read_text())
    for index, stage in enumerate(stages):
        result = run_stage(stage, work / f"stage-{index}", base_env, built)
        built[stage.name or str(index)] = result
    final = stages[-1]
    entrypoint = [map_paths(arg, result.root) for arg in exec_form(final.last("ENTRYPOINT"))]
    return InstalledImage(result.root, entrypoint, result.env)


def output_of(image: InstalledImage, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*image.entrypoint, *args],
        env=image.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS)
def test_installed_image_leaves_only_the_venv(installed_image: InstalledImage) -> None:
    root = installed_image.root
    assert sorted(p.relative_to(root).as_posix() for p in root.iterdir()) == ["opt", "tmp"]
    assert [p.name for p in (root / "opt").iterdir()] == ["venv"]
    assert list((root / "tmp").iterdir()) == []


@pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS)
def test_installed_image_prints_package_version(installed_image: InstalledImage) -> None:
    result = output_of(installed_image, "--version")
    versions = re.findall(r"\d+\.\d+\.\d+\S*", result.stdout + result.stderr)
    assert (result.returncode, versions[:1]) == (0, [__version__])


@pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS)
def test_installed_image_default_listen_address_is_exposed_port(
    installed_image: InstalledImage,
) -> None:
    result = output_of(installed_image, "--help")
    assert result.returncode == 0
    assert ":10209" in result.stdout


LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str) -> tuple[int, str]:
    try:
        with LOCAL.open(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def running_demo(image: InstalledImage, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The installed exporter in --demo mode, once its health endpoint answers 200."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*image.entrypoint, "--demo", "--web.listen-address", f"127.0.0.1:{port}"],
            env=image.env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(proc, f"{base_url}/-/healthy", log)
        yield proc, base_url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited with {proc.returncode}:\n{log.read_text()}")
        return http_get(url)[0] == 200

    wait_until(healthy, READY_DEADLINE_SECONDS, f"{url} healthy")


@pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS)
def test_installed_image_demo_serves_health_and_metrics(
    installed_image: InstalledImage, tmp_path: Path
) -> None:
    with running_demo(installed_image, tmp_path / "exporter.log") as (_proc, base_url):
        health_status, _ = http_get(f"{base_url}/-/healthy")
        metrics_status, metrics = http_get(f"{base_url}/metrics")
    assert (health_status, metrics_status) == (200, 200)
    assert "cognito_user_import_exporter_build_info" in metrics


@pytest.mark.timeout(INSTALL_TIMEOUT_SECONDS)
def test_installed_image_exits_zero_on_sigterm(
    installed_image: InstalledImage, tmp_path: Path
) -> None:
    log = tmp_path / "exporter.log"
    with running_demo(installed_image, log) as (proc, _base_url):
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=EXIT_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_DEADLINE_SECONDS}s after SIGTERM:\n{log.read_text()}")
    assert code == 0, log.read_text()
