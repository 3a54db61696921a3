"""The mixin's option to alert on a reason: no rule without it; with it, promtool says the rule
fires for a recent job whose users failed for a chosen reason, and only then."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.generate_mixin import alerts_text, evaluate
from tests.prometheus_releases import PrometheusRelease

ALERT = "CognitoUserImportJobUsersFailedForReason"
CASE = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'cognito_user_import_job_info{job="cognito-import-exporter", instance="e:1", user_pool_id="P", job_id="import-A", job_name="nightly", status="Succeeded"}'
        values: '1x10'
      - series: 'cognito_user_import_job_reason_users{job="cognito-import-exporter", instance="e:1", user_pool_id="P", job_id="import-A", outcome="failed", reason="schema_mismatch"}'
        values: '7x10'
      - series: 'cognito_user_import_job_reason_users{job="cognito-import-exporter", instance="e:1", user_pool_id="P", job_id="import-A", outcome="failed", reason="other"}'
        values: '3x10'
      - series: 'cognito_user_import_job_reason_users{job="cognito-import-exporter", instance="e:1", user_pool_id="P", job_id="import-A", outcome="skipped", reason="schema_mismatch"}'
        values: '5x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: CognitoUserImportJobUsersFailedForReason
        exp_alerts:
          - exp_labels: {severity: warning, user_pool_id: P, job_id: import-A, job_name: nightly, reason: schema_mismatch}
            exp_annotations:
              summary: Users of a user import job failed for a reason chosen to alert on.
              description: "The log of import job nightly (import-A) in user pool P says 7 of its users failed with reason schema_mismatch. The exporter reads the reasons of pools with reasons: true; the status page shows example lines of the log."
              runbook_url: https://github.com/cognito-import-exporter/cognito-import-exporter/blob/main/README.md#cognitouserimportjobusersfailedforreason
"""  # noqa: E501


def rules_named(document: dict[str, object], name: str) -> list[object]:
    groups = document["alerts"]["groups"]  # type: ignore[index]
    return [rule for group in groups for rule in group["rules"] if rule["alert"] == name]


def test_no_reason_is_alerted_on_unless_chosen() -> None:
    assert rules_named(evaluate(), ALERT) == []
    chosen = rules_named(evaluate("{ failedReasonsToAlertOn: ['schema_mismatch'] }"), ALERT)
    assert len(chosen) == 1
    assert 'reason=~"schema_mismatch"' in chosen[0]["expr"]  # type: ignore[index]


@pytest.mark.slow
def test_promtool_fires_the_alert_for_the_chosen_reason_only(
    prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    document = evaluate("{ failedReasonsToAlertOn: ['schema_mismatch'] }")
    (tmp_path / "alerts.yml").write_text(alerts_text(document), encoding="utf-8")
    (tmp_path / "reason.test.yml").write_text(CASE, encoding="utf-8")
    verdict = subprocess.run(
        [prometheus_release.promtool, "test", "rules", "reason.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
