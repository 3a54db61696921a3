"""The generated dashboard against Grafana's own schema: npm @grafana/schema, whose `Dashboard`
type is what Grafana's code reads a dashboard as. The dashboard JSON is written out as a
TypeScript object literal of that type and compiled with `tsc --strict --noEmit`, so a field
the schema lacks, a missing one or a value of the wrong type is a compile error.

The versions are pinned in tests/grafana_schema/package-lock.json and installed into
.cache/grafana-schema/ by scripts/install/40-grafana-schema.sh.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tools import require_tool

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = REPO / "grafana" / "cognito-import-jobs.json"
PINNED = REPO / "tests" / "grafana_schema" / "package.json"
INSTALLED = REPO / ".cache" / "grafana-schema" / "node_modules"
TSC_TIMEOUT_SECONDS = 180
TSC_OPTIONS = [
    "--strict",
    "--noEmit",
    "--target",
    "es2022",
    "--module",
    "esnext",
    "--moduleResolution",
    "bundler",
]
# JSON holds an enum's value where the schema has a TypeScript enum (FieldColorModeId,
# ThresholdsMode, ...); each string type is widened by its values, which leaves a plain string
# a string and turns an enum into its values.
PROLOGUE = """import type { Dashboard } from '@grafana/schema';

type AsJson<T> = T extends string
  ? T | `${T}`
  : T extends readonly (infer Item)[]
    ? AsJson<Item>[]
    : T extends object
      ? { [Key in keyof T]: AsJson<T[Key]> }
      : T;

export const dashboard: AsJson<Dashboard> = """
ERROR_LINE = re.compile(r"^(?P<file>[^(\s]+)\(\d+,\d+\): error (?P<code>TS\d+): (?P<message>.*)$")

Json = dict[str, Any]
Errors = dict[str, list[tuple[str, str]]]


def load_dashboard() -> Json:
    dashboard: Json = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return dashboard


def pinned_version(package: str) -> str:
    pinned: dict[str, str] = json.loads(PINNED.read_text(encoding="utf-8"))["devDependencies"]
    return pinned[package]


def installed_tsc() -> Path:
    """tsc of the pinned install; skip (fail under CI) when it is missing or another version."""
    require_tool("node")
    tsc = INSTALLED / ".bin" / "tsc"
    for package in ("@grafana/schema", "typescript"):
        manifest = INSTALLED / package / "package.json"
        version = json.loads(manifest.read_text())["version"] if manifest.exists() else None
        if version != pinned_version(package) or not os.access(tsc, os.X_OK):
            reason = (
                f"{package} {pinned_version(package)} is not installed in {INSTALLED.parent}:"
                " run scripts/install/40-grafana-schema.sh"
            )
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
    return tsc


def typed_source(dashboard: Json) -> str:
    return PROLOGUE + json.dumps(dashboard, indent=2) + ";\n"


def compile_errors(tsc: Path, workdir: Path, sources: dict[str, str]) -> Errors:
    """(code, message) of every error tsc reports, by source name, all in one compilation."""
    (workdir / "node_modules").symlink_to(INSTALLED, target_is_directory=True)
    for name, source in sources.items():
        (workdir / f"{name}.ts").write_text(source, encoding="utf-8")
    result = subprocess.run(
        [str(tsc), *TSC_OPTIONS, *(f"{name}.ts" for name in sources)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=TSC_TIMEOUT_SECONDS,
        check=False,
    )
    errors: Errors = {name: [] for name in sources}
    for line in result.stdout.splitlines():
        match = ERROR_LINE.match(line)
        if match:
            where = match["file"].removesuffix(".ts")
            errors.setdefault(where, []).append((match["code"], match["message"]))
    assert result.returncode == (2 if any(errors.values()) else 0), result.stdout + result.stderr
    return errors


def query_variables(dashboard: Json) -> list[Json]:
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def with_definitions(dashboard: Json) -> None:
    for variable in query_variables(dashboard):
        variable["definition"] = variable["query"]["query"]


def with_empty_current(dashboard: Json) -> None:
    for variable in dashboard["templating"]["list"]:
        variable["current"] = {}


def with_null_all_value(dashboard: Json) -> None:
    query_variables(dashboard)[-1]["allValue"] = None


def with_an_unknown_color_mode(dashboard: Json) -> None:
    panel = next(p for p in dashboard["panels"] if p["type"] == "stat")
    panel["fieldConfig"]["defaults"]["color"]["mode"] = "rainbow"


def without_a_variable_name(dashboard: Json) -> None:
    del dashboard["templating"]["list"][0]["name"]


Breakage = Callable[[Json], None]
# name: (the breakage, the errors it makes, their code and a part of their message)
BREAKAGES: dict[str, tuple[Breakage, int, str, str]] = {
    "definition": (with_definitions, 4, "TS2353", "'\"definition\"' does not exist in type"),
    "current": (with_empty_current, 5, "TS2739", "missing the following properties"),
    "all_value_null": (with_null_all_value, 1, "TS2322", "Type 'null' is not assignable"),
    "color_mode": (with_an_unknown_color_mode, 1, "TS2322", "'\"rainbow\"' is not assignable"),
    "name": (without_a_variable_name, 1, "TS2741", "Property 'name' is missing"),
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Errors:
    """tsc's errors for the shipped dashboard ("shipped") and for each breakage of it."""
    tsc = installed_tsc()
    sources = {"shipped": typed_source(load_dashboard())}
    for name, (breakage, *_) in BREAKAGES.items():
        dashboard = load_dashboard()
        breakage(dashboard)
        sources[name] = typed_source(dashboard)
    return compile_errors(tsc, tmp_path_factory.mktemp("grafana-schema"), sources)


def test_the_dashboard_type_checks_as_grafanas_dashboard(verdicts: Errors) -> None:
    assert verdicts["shipped"] == []
    # the schema's own files compile too: no error outside the dashboards
    assert set(verdicts) == {"shipped", *BREAKAGES}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_schema_check_refuses_what_grafanas_schema_refuses(
    verdicts: Errors, breakage: str
) -> None:
    _, count, code, message = BREAKAGES[breakage]

    errors = verdicts[breakage]
    assert [error_code for error_code, _ in errors] == [code] * count, errors
    assert all(message in text for _, text in errors), errors
