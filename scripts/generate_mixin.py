"""Build the monitoring mixin (mixin/mixin.libsonnet) into the files the project ships.

    .venv/bin/python scripts/generate_mixin.py           # write them
    .venv/bin/python scripts/generate_mixin.py --check   # exit 1 when one is out of date

prometheus/alerts.yml, deploy/kubernetes/prometheusrule.yaml, the Helm chart's
charts/cognito-import-exporter/files/alerts.yml and grafana/*.json are its output; edit the mixin,
never them. `_config` overrides, as jsonnet, render other selectors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import _jsonnet
import yaml

REPO = Path(__file__).resolve().parent.parent
MIXIN = REPO / "mixin"
ALERTS_FILE = REPO / "prometheus" / "alerts.yml"
PROMETHEUS_RULE_FILE = REPO / "deploy" / "kubernetes" / "prometheusrule.yaml"
CHART_ALERTS_FILE = REPO / "charts" / "cognito-import-exporter" / "files" / "alerts.yml"
DASHBOARDS_DIR = REPO / "grafana"

GENERATED = "# Generated from mixin/ by scripts/generate_mixin.py; do not edit.\n"
ALERTS_HEADER = (
    "# Alert rules for cognito-import-exporter.\n"
    + GENERATED
    + "#\n#   promtool check rules prometheus/alerts.yml\n"
    "#   promtool test rules prometheus/alerts.test.yml\n"
)
CHART_ALERTS_HEADER = (
    "# The alert rules of the chart's PrometheusRule (templates/prometheusrule.yaml).\n" + GENERATED
)
PROMETHEUS_RULE_HEADER = (
    GENERATED
    + """apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: cognito-import-exporter
  labels:
    app.kubernetes.io/name: cognito-import-exporter
spec:
"""
)
# jsonnet sorts every object's keys; rules read better in the order Prometheus' docs use
RULE_KEYS = ("alert", "record", "expr", "for", "labels", "annotations")
ANNOTATION_KEYS = ("summary", "description", "runbook_url")

Json = dict[str, Any]


def evaluate(config_overrides: str = "") -> Json:
    """The mixin with `_config+:: {...}` overrides mixed in (jsonnet source, may be empty)."""
    snippet = (
        "local mixin = (import 'mixin.libsonnet')"
        + (f" + {{ _config+:: {config_overrides} }}" if config_overrides else "")
        + ";\n{ alerts: mixin.prometheusAlerts, rules: mixin.prometheusRules,"
        " dashboards: mixin.grafanaDashboards }"
    )
    output: Json = json.loads(_jsonnet.evaluate_snippet("generate", snippet, jpathdir=[str(MIXIN)]))
    return output


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so expressions stay readable."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _represent_text)


def _ordered(mapping: Json, keys: tuple[str, ...]) -> Json:
    known = {key: mapping[key] for key in keys if key in mapping}
    return {**known, **{key: value for key, value in mapping.items() if key not in known}}


def rule_groups(document: Json) -> Json:
    groups = []
    for group in document["alerts"]["groups"] + document["rules"]["groups"]:
        rules = []
        for rule in group["rules"]:
            rule = _ordered(rule, RULE_KEYS)
            if "annotations" in rule:
                rule["annotations"] = _ordered(rule["annotations"], ANNOTATION_KEYS)
            rules.append(rule)
        groups.append({**group, "rules": rules})
    return {"groups": groups}


def alerts_text(document: Json, header: str = ALERTS_HEADER) -> str:
    body = yaml.dump(
        rule_groups(document), Dumper=_BlockDumper, sort_keys=False, width=100, indent=2
    )
    return header + body


def prometheus_rule_text(document: Json) -> str:
    body = yaml.dump(
        {"groups": rule_groups(document)["groups"]},
        Dumper=_BlockDumper,
        sort_keys=False,
        width=100,
        indent=2,
    )
    return PROMETHEUS_RULE_HEADER + "".join(
        f"  {line}\n" if line else "\n" for line in body.splitlines()
    )


def render(config_overrides: str = "") -> dict[Path, str]:
    """Every file the mixin gives, by path."""
    document = evaluate(config_overrides)
    files = {
        ALERTS_FILE: alerts_text(document),
        PROMETHEUS_RULE_FILE: prometheus_rule_text(document),
        CHART_ALERTS_FILE: alerts_text(document, CHART_ALERTS_HEADER),
    }
    for name, dashboard in document["dashboards"].items():
        files[DASHBOARDS_DIR / name] = json.dumps(dashboard, indent=2) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say which files differ")
    options = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(REPO))
        if not options.check:
            path.write_text(text, encoding="utf-8")
    verb = "out of date" if options.check else "written"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if options.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
