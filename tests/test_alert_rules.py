"""The alert rules in prometheus/, checked by promtool and run by a real Prometheus.

promtool validates the rules and the example configuration and runs the unit tests in
alerts.test.yml; the unit tests themselves are checked for covering every alert both ways and
for failing when an alert's expression is broken. Then a real Prometheus evaluates the rules
against the exporter's demo (a simulated Cognito whose pools hold failed jobs, and jobs with
failed and skipped users): every rule must evaluate without error and the job alerts must name
exactly the jobs the exporter reports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus_releases import PrometheusRelease
from tests.prometheus_server import (
    JobKey,
    Prometheus,
    running_prometheus,
)
from tests.tools import holds_within

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = REPO / "prometheus"
ALERTS_FILE = RULES_DIR / "alerts.yml"
TESTS_FILE = RULES_DIR / "alerts.test.yml"
CONFIG_FILE = RULES_DIR / "prometheus.yml"

ALERT_COUNT = 13
SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
SCRAPE_JOB = "cognito-import-exporter"

PROMTOOL_TIMEOUT_SECONDS = 120
ALERTS_DEADLINE_SECONDS = 60.0
# Terminal statuses: a job in one of them no longer changes, so neither do its alerts.
FINISHED = "Succeeded|Failed|Stopped|Expired"

Json = dict[str, Any]


def load_yaml(path: Path) -> Json:
    document: Json = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document


def alert_rules(rules: Json) -> list[Json]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in alert_rules(load_yaml(ALERTS_FILE))}


def promtool(
    release: PrometheusRelease, *args: str, cwd: Path = RULES_DIR
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [release.promtool, *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_SECONDS,
        check=False,
        cwd=cwd,
    )


def test_rules_pass_promtool_check(prometheus_release: PrometheusRelease) -> None:
    result = promtool(prometheus_release, "check", "rules", ALERTS_FILE.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {ALERT_COUNT} rules found" in result.stdout
    assert len(alert_rules(load_yaml(ALERTS_FILE))) == ALERT_COUNT


def test_rule_unit_tests_pass(prometheus_release: PrometheusRelease) -> None:
    result = promtool(prometheus_release, "test", "rules", TESTS_FILE.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].strip() == "SUCCESS"


def test_example_prometheus_config_passes_promtool_check(
    prometheus_release: PrometheusRelease,
) -> None:
    result = promtool(prometheus_release, "check", "config", CONFIG_FILE.name)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: prometheus.yml is valid prometheus config file syntax" in result.stdout
    assert f"SUCCESS: {ALERT_COUNT} rules found" in result.stdout


def test_example_prometheus_config_scrapes_the_exporter_once_a_minute() -> None:
    config = load_yaml(CONFIG_FILE)
    (job,) = config["scrape_configs"]

    assert config["rule_files"] == [ALERTS_FILE.name]
    assert config["global"]["scrape_interval"] == "60s"
    assert job["job_name"] == SCRAPE_JOB
    assert job["scrape_timeout"] == "30s"
    assert job["static_configs"] == [{"targets": ["localhost:10209"]}]


def test_every_alert_has_severity_annotations_and_for() -> None:
    for rule in alert_rules(load_yaml(ALERTS_FILE)):
        assert set(rule["labels"]) == {"severity"}, rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert set(rule["annotations"]) == ANNOTATIONS, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = [case for test in load_yaml(TESTS_FILE)["tests"] for case in test["alert_rule_test"]]

    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}

    assert firing == alert_names()
    assert quiet == alert_names()


def failed_cases(promtool_output: str) -> list[tuple[str, str]]:
    """(alertname, "quiet" or "firing") for every failed case promtool reports.

    A case is "quiet" when it expected no alert, "firing" when it expected some.
    """
    failures = []
    for block in promtool_output.split("alertname: ")[1:]:
        name = block.split(",", 1)[0]
        expected_nothing = re.search(r"^\s*exp:\[\],", block, flags=re.MULTILINE) is not None
        failures.append((name, "quiet" if expected_nothing else "firing"))
    return failures


def run_unit_tests_with_every_expr(
    release: PrometheusRelease, expr: str, for_: str, workdir: Path
) -> str:
    rules = load_yaml(ALERTS_FILE)
    for rule in alert_rules(rules):
        rule["expr"] = expr
        rule["for"] = for_
    (workdir / ALERTS_FILE.name).write_text(yaml.safe_dump(rules), encoding="utf-8")
    shutil.copy(TESTS_FILE, workdir / TESTS_FILE.name)
    result = promtool(release, "test", "rules", TESTS_FILE.name, cwd=workdir)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_unit_tests_catch_an_alert_that_never_fires(
    prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    output = run_unit_tests_with_every_expr(prometheus_release, "vector(1) == 0", "0m", tmp_path)

    caught = {name for name, kind in failed_cases(output) if kind == "firing"}
    assert caught == alert_names()


def test_unit_tests_catch_an_alert_that_always_fires(
    prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    output = run_unit_tests_with_every_expr(prometheus_release, "vector(1)", "0m", tmp_path)

    caught = {name for name, kind in failed_cases(output) if kind == "quiet"}
    assert caught == alert_names()


# A real Prometheus evaluating the rules against the demo.


@pytest.fixture(scope="module")
def prometheus(
    exporter_address: str,
    prometheus_release: PrometheusRelease,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    with running_prometheus(
        tmp_path_factory.mktemp("prometheus"),
        prometheus_release,
        [exporter_address],
        rule_files=[ALERTS_FILE],
        job_name=SCRAPE_JOB,
    ) as server:
        yield server


def test_prometheus_evaluates_every_rule_without_error(prometheus: Prometheus) -> None:
    def all_evaluated() -> bool:
        return all(rule["health"] != "unknown" for rule in prometheus.rules())

    assert holds_within(all_evaluated, ALERTS_DEADLINE_SECONDS), "rules were not evaluated"

    health = {
        rule["name"]: (rule["health"], rule.get("lastError", "")) for rule in prometheus.rules()
    }
    assert health == {name: ("ok", "") for name in alert_names()}


@pytest.mark.parametrize(
    ("alertname", "selector"),
    [
        ("CognitoUserImportJobFailed", 'cognito_user_import_job_info{status="Failed"}'),
        ("CognitoUserImportJobUsersFailed", 'cognito_user_import_job_users{outcome="failed"}'),
        ("CognitoUserImportJobUsersSkipped", 'cognito_user_import_job_users{outcome="skipped"}'),
    ],
)
def test_job_alerts_name_exactly_the_jobs_the_exporter_reports(
    prometheus: Prometheus, alertname: str, selector: str
) -> None:
    """Every finished job whose series is above 0 fires; no job fires that never was above 0."""

    def named(expr: str) -> dict[JobKey, str]:
        return prometheus.jobs(
            f"({expr}) * on (user_pool_id, job_id) group_left (job_name)"
            " max by (user_pool_id, job_id, job_name) (cognito_user_import_job_info)"
        )

    finished = named(
        f"{selector} > 0 and on (user_pool_id, job_id)"
        f' cognito_user_import_job_info{{status=~"{FINISHED}"}}'
    )
    assert finished, f"the demo reports no finished job for {alertname}"

    assert holds_within(
        lambda: finished.items() <= prometheus.firing(alertname).items(), ALERTS_DEADLINE_SECONDS
    ), f"{alertname} did not fire for {sorted(finished)}"

    firing = prometheus.firing(alertname)
    ever_above_zero = named(f"max_over_time({selector}[5m]) > 0")
    assert firing.items() <= ever_above_zero.items()
