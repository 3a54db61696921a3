"""The monitoring mixin: the shipped alert rules, PrometheusRule and dashboard are what it gives,
its `_config` reaches every expression, and it follows the monitoring-mixins conventions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import _jsonnet
import pytest
import yaml

from scripts.generate_mixin import (
    ALERTS_FILE,
    CHART_ALERTS_FILE,
    DASHBOARDS_DIR,
    PROMETHEUS_RULE_FILE,
    REPO,
    alerts_text,
    evaluate,
    render,
)
from tests.prometheus_releases import PrometheusRelease

DEFAULT_SELECTOR = 'job="cognito-import-exporter"'
OTHER_SELECTOR = 'namespace="identity", job="cognito-sidecar"'
SEVERITIES = {"critical", "warning", "info"}
# a metric's selector: the name, then its braces (range vectors and functions around it)
METRIC_SELECTOR = re.compile(r"\b(cognito_user_import_\w+|up)\{([^}]*)\}")
BARE_METRIC = re.compile(r"\b(cognito_user_import_\w+|up)\b(?!\{)")
README = REPO / "README.md"
RUNBOOK_URL_BASE = (
    "https://github.com/cognito-import-exporter/cognito-import-exporter/blob/main/README.md"
)
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")

Json = dict[str, Any]


def alert_rules(document: Json) -> list[Json]:
    return [rule for group in document["alerts"]["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def default() -> Json:
    return evaluate()


def test_the_shipped_files_are_what_the_mixin_gives() -> None:
    rendered = render()
    assert set(rendered) == {
        ALERTS_FILE,
        PROMETHEUS_RULE_FILE,
        CHART_ALERTS_FILE,
        DASHBOARDS_DIR / "cognito-import-jobs.json",
    }
    for path, text in rendered.items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(REPO)} is out of date: .venv/bin/python scripts/generate_mixin.py"
        )


def test_the_generator_checks_without_writing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "scripts/generate_mixin.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_prometheus_rule_carries_the_alert_groups() -> None:
    alerts = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    rule = yaml.safe_load(PROMETHEUS_RULE_FILE.read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == {"groups": alerts["groups"]}


def test_every_metric_in_every_alert_is_selected_by_the_configured_selector(
    default: Json,
) -> None:
    other = evaluate(f"{{ cognitoImportSelector: {json.dumps(OTHER_SELECTOR)} }}")
    before, after = alert_rules(default), alert_rules(other)
    assert [rule["alert"] for rule in before] == [rule["alert"] for rule in after]
    assert len(before) == 13
    for old, new in zip(before, after, strict=True):
        assert old["expr"] != new["expr"], old["alert"]
        assert DEFAULT_SELECTOR not in new["expr"], new["alert"]
        assert BARE_METRIC.findall(new["expr"]) == [], new["alert"]
        selectors = METRIC_SELECTOR.findall(new["expr"])
        assert selectors, new["alert"]
        for metric, matchers in selectors:
            assert matchers.startswith(OTHER_SELECTOR), (new["alert"], metric, matchers)
        # nothing else changed
        assert old["expr"].replace(DEFAULT_SELECTOR, OTHER_SELECTOR) == new["expr"]


def test_thresholds_and_dashboard_identity_come_from_the_config(default: Json) -> None:
    changed = evaluate(
        "{ jobStuckHours: 3, jobExpiringHours: 30, dashboardUid: 'imports',"
        " dashboardTitle: 'Imports' }"
    )
    rules = {rule["alert"]: rule for rule in alert_rules(changed)}
    stale = {rule["alert"]: rule for rule in alert_rules(evaluate("{ staleDataSeconds: 1800 }"))}
    assert stale["CognitoUserImportDataStale"]["expr"].rstrip().endswith("> 1800")
    assert "> 900" in rules["CognitoUserImportDataStale"]["expr"]
    assert "> 3 * 3600" in rules["CognitoUserImportJobStuck"]["expr"]
    assert "more than 3 hours" in rules["CognitoUserImportJobStuck"]["annotations"]["summary"]
    assert "> 30 * 3600" in rules["CognitoUserImportJobExpiring"]["expr"]
    (dashboard,) = changed["dashboards"].values()
    assert (dashboard["uid"], dashboard["title"]) == ("imports", "Imports")
    (shipped,) = default["dashboards"].values()
    assert (shipped["uid"], shipped["title"]) == (
        "cognito-import-jobs",
        "Amazon Cognito user import jobs",
    )


def test_the_dashboard_variables_follow_the_selector() -> None:
    other = evaluate(f"{{ cognitoImportSelector: {json.dumps(OTHER_SELECTOR)} }}")
    (dashboard,) = other["dashboards"].values()
    queries = {
        variable["name"]: variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    }
    assert queries["job"] == f"label_values(up{{{OTHER_SELECTOR}}}, job)"
    assert queries["instance"] == f'label_values(up{{{OTHER_SELECTOR}, job=~"$job"}}, instance)'


def test_alerts_follow_the_mixin_conventions(default: Json) -> None:
    for rule in alert_rules(default):
        name = rule["alert"]
        assert re.fullmatch(r"(?:[A-Z][a-z0-9]*)+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        # a static summary; the description says which pool, job or target
        assert "{{" not in annotations["summary"], name
        assert annotations["summary"].endswith("."), name
        if not rule["expr"].startswith("absent("):
            assert "{{ $labels." in annotations["description"], name
    assert default["rules"] == {"groups": []}


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation but hyphens and
    underscores dropped, spaces made hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_headings() -> dict[str, str]:
    """anchor -> heading text of every heading in the README, as GitHub numbers repeated ones
    (-1, -2, ...); lines in fenced code blocks are no headings."""
    headings: dict[str, str] = {}
    in_code = False
    for line in README.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match is None:
            continue
        anchor = github_anchor(match.group(1))
        repeats = sum(
            1 for known in headings if re.fullmatch(rf"{re.escape(anchor)}(-\d+)?", known)
        )
        headings[f"{anchor}-{repeats}" if repeats else anchor] = match.group(1)
    return headings


def test_every_alert_links_to_its_runbook_in_the_readme(default: Json) -> None:
    headings = readme_headings()
    for rule in alert_rules(default):
        url = rule["annotations"]["runbook_url"]
        base, _, anchor = url.partition("#")
        assert base == RUNBOOK_URL_BASE, url
        assert headings.get(anchor) == rule["alert"], f"{url}: no README heading {rule['alert']}"
    assert len(alert_rules(default)) == 13


def test_readme_anchors_are_githubs() -> None:
    headings = readme_headings()
    assert headings["security"] == "Security"
    assert (
        headings["finding-pools-and-spreading-the-work"] == "Finding pools and spreading the work"
    )
    assert headings["cognitouserimportjobfailed"] == "CognitoUserImportJobFailed"
    assert headings["cognito-import-exporter"] == "cognito-import-exporter"
    assert github_anchor("Scaling, on paper") == "scaling-on-paper"


def test_the_runbook_base_comes_from_the_config() -> None:
    wiki = "https://wiki.example.com/ops/cognito-import"
    urls = {
        rule["alert"]: rule["annotations"]["runbook_url"]
        for rule in alert_rules(evaluate(f"{{ runbookUrlBase: {json.dumps(wiki)} }}"))
    }
    assert urls["CognitoUserImportJobFailed"] == f"{wiki}#cognitouserimportjobfailed"
    assert all(url == f"{wiki}#{name.lower()}" for name, url in urls.items())


@pytest.mark.slow
def test_the_readme_example_builds_with_its_selector(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```jsonnet\n(.*?)```", readme, flags=re.DOTALL)
    assert match is not None
    (tmp_path / "cognito-import-exporter").symlink_to(REPO)  # where jsonnet-bundler puts it
    built = json.loads(
        _jsonnet.evaluate_snippet("readme", match.group(1), jpathdir=[str(tmp_path)])
    )
    assert set(built) == {"cognito-import-alerts.yaml", "cognito-import-jobs.json"}
    alerts = yaml.safe_load(built["cognito-import-alerts.yaml"])
    exprs = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    assert len(exprs) == 13
    assert all('job=~"cognito-import-exporter|cognito-import-probe"' in e for e in exprs)
    assert json.loads(built["cognito-import-jobs.json"])["uid"] == "cognito-import-jobs"


PROBE_SPLIT_SELECTOR = 'job=~"cognito-import-exporter|cognito-import-probe-.*"'
# The README's hashmod split: scrape_success from a /probe job, api_errors_total from the
# /exporter-metrics job of the same replica.
PROBE_SPLIT_CASE = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'cognito_user_import_scrape_success{job="cognito-import-probe-0", instance="r0:10209", user_pool_id="POOL"}'
        values: '0x40'
      - series: 'cognito_user_import_api_errors_total{job="cognito-import-exporter", instance="r0:10209", user_pool_id="POOL", error_code="CODE"}'
        values: '1+1x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: CognitoUserImportScrapeFailing
        exp_alerts: []
"""  # noqa: E501


def failing_alert_test(
    release: PrometheusRelease, tmp_path: Path, pool_id: str, code: str
) -> subprocess.CompletedProcess[str]:
    """promtool's verdict on "the failing-collection alert stays quiet" for a pool that
    fails with `code`, under the probe split's selector."""
    document = evaluate(f"{{ cognitoImportSelector: {json.dumps(PROBE_SPLIT_SELECTOR)} }}")
    (tmp_path / "alerts.yml").write_text(alerts_text(document), encoding="utf-8")
    case = PROBE_SPLIT_CASE.replace("POOL", pool_id).replace("CODE", code)
    (tmp_path / "split.test.yml").write_text(case, encoding="utf-8")
    return subprocess.run(
        [release.promtool, "test", "rules", "split.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_the_probe_split_leaves_replica_region_pools_out_of_the_failing_alert(
    prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    quiet = failing_alert_test(
        prometheus_release, tmp_path, "eu-west-1_Replica1", "OperationNotEnabled"
    )
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    # any other failure pages: promtool finds the alert it was told not to expect
    paged = failing_alert_test(prometheus_release, tmp_path, "eu-west-1_Denied1", "AccessDenied")
    assert paged.returncode == 1
    verdict = paged.stdout + paged.stderr
    assert 'alertname="CognitoUserImportScrapeFailing"' in verdict
    assert 'user_pool_id="eu-west-1_Denied1"' in verdict


def test_fractional_thresholds_are_kept_and_an_empty_selector_refused() -> None:
    rules = {
        rule["alert"]: rule
        for rule in alert_rules(evaluate("{ jobStuckHours: 0.5, jobExpiringHours: 20.75 }"))
    }
    assert "> 0.5 * 3600" in rules["CognitoUserImportJobStuck"]["expr"]
    assert "more than 0.5 hours" in rules["CognitoUserImportJobStuck"]["annotations"]["summary"]
    assert "> 20.75 * 3600" in rules["CognitoUserImportJobExpiring"]["expr"]
    with pytest.raises(RuntimeError, match="cognitoImportSelector must select something"):
        evaluate("{ cognitoImportSelector: ' ' }")
