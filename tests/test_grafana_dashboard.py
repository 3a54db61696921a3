"""The Grafana dashboard, checked as Grafana would load it and run against a real Prometheus.

Prometheus scrapes the exporter's demo (a simulated Cognito with a few pools whose jobs move
through their lifecycle) every second; every query of every panel then has to succeed and return
data, with the dashboard variables substituted the way Grafana substitutes them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.demo.model import DEFAULT_ACCOUNT_ID
from exporter.demo.world import RETIRED_POOL, configured_demo_pools
from tests.prometheus_releases import PrometheusRelease
from tests.prometheus_server import Prometheus, running_prometheus
from tests.tools import holds_within

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_FILE = REPO / "grafana" / "cognito-import-jobs.json"
PROVISIONING_DIR = REPO / "grafana" / "provisioning"

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARD_UID = "cognito-import-jobs"
PANEL_COUNT = 25
QUERY_VARIABLES = 4
TARGET_COUNT = 33

SCRAPE_INTERVAL_SECONDS = 1
# Grafana's built-in intervals for a data source whose scrape interval is 1s: $__interval is the
# query step (at least the scrape interval) and $__rate_interval is
# max($__interval + scrape interval, 4 * scrape interval).
GRAFANA_INTERVALS = {
    "__interval": "1s",
    "__interval_ms": "1000",
    "__rate_interval": "4s",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# rate() over $__rate_interval needs at least two samples in the window; wait for a few more.
SCRAPES_BEFORE_QUERYING = 6
RANGE_QUERY_SECONDS = 30
DATA_DEADLINE_SECONDS = 90.0

RECENT_JOBS_COLUMNS = [
    "Pool",
    "Job name",
    "Job ID",
    "Status",
    "Created",
    "Started",
    "Completed",
    "Imported",
    "Skipped",
    "Failed",
]
# The matrix's columns, in lifecycle order.
JOB_STATUSES = [
    "Created",
    "Pending",
    "InProgress",
    "Stopping",
    "Stopped",
    "Expired",
    "Failed",
    "Succeeded",
]

Json = dict[str, Any]


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str
    instant: bool


def load_dashboard() -> Json:
    dashboard: Json = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return dashboard


def all_panels(dashboard: Json) -> list[Json]:
    """Every panel, including those nested in collapsed rows."""
    panels: list[Json] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def data_panels(dashboard: Json) -> list[Json]:
    return [panel for panel in all_panels(dashboard) if panel["type"] != "row"]


def panel_queries(dashboard: Json) -> list[PanelQuery]:
    return [
        PanelQuery(
            panel=panel["title"],
            ref_id=target["refId"],
            expr=target["expr"],
            instant=bool(target.get("instant")) and not target.get("range"),
        )
        for panel in data_panels(dashboard)
        for target in panel["targets"]
    ]


def template_variable(dashboard: Json, name: str) -> Json:
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == name:
            found: Json = variable
            return found
    raise AssertionError(f"the dashboard has no ${name} variable")


def variable_query(variable: Json) -> str:
    query = variable["query"]
    text: str = query["query"] if isinstance(query, dict) else query
    return text


def prometheus_regex_alternation(values: list[str]) -> str:
    """What Grafana puts in a PromQL regex matcher for a multi-value variable: (a|b|c).

    Regex metacharacters are escaped with a backslash, itself escaped for the PromQL string.
    """
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", value) for value in values]
    return "(" + "|".join(escaped) + ")"


def interpolate(expr: str, variables: dict[str, str]) -> str:
    """Substitute $name and ${name} the way Grafana does; an unknown variable is an error."""

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise AssertionError(f"unknown variable ${name} in {expr!r}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value_of, expr)


def grafana_series_text(series: Json) -> str:
    """The text Grafana's query_result() gives the variable regex for one series.

    Labels come in Prometheus' (alphabetical) order: name{a="1",b="2"} value timestamp_ms.
    """
    metric = dict(series["metric"])
    name = metric.pop("__name__", "")
    labels = ",".join(f'{key}="{value}"' for key, value in metric.items())
    timestamp, value = series["value"]
    return f"{name}{{{labels}}} {value} {int(float(timestamp) * 1000)}"


def python_regex(grafana_regex: str) -> re.Pattern[str]:
    """A Grafana /pattern/ (JavaScript syntax, named groups as (?<name>...)) for Python."""
    match = re.fullmatch(r"/(.*)/([a-z]*)", grafana_regex, flags=re.DOTALL)
    assert match is not None, f"variable regex {grafana_regex!r} is not in /pattern/ form"
    flags = re.IGNORECASE if "i" in match.group(2) else 0
    return re.compile(match.group(1).replace("(?<", "(?P<"), flags)


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
        scrape_interval_seconds=SCRAPE_INTERVAL_SECONDS,
        scraped="count_over_time(cognito_user_import_exporter_build_info[1m])"
        f" >= {SCRAPES_BEFORE_QUERYING}",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def pools(prometheus: Prometheus) -> dict[str, str]:
    """user_pool_id -> user_pool_name of every pool the exporter reports."""
    return {
        series["metric"]["user_pool_id"]: series["metric"]["user_pool_name"]
        for series in prometheus.vector("cognito_user_import_pool_info")
    }


def variable_options(prometheus: Prometheus, variable: Json) -> dict[str, str]:
    """value -> text of every option a query variable offers, found as Grafana finds them:
    label_values(expr, label), or query_result(expr) through the variable's regex."""
    query = variable_query(variable)
    labels = re.fullmatch(r"label_values\((.*), (\w+)\)", query, flags=re.DOTALL)
    if labels is not None:
        values = {s["metric"][labels.group(2)] for s in prometheus.vector(labels.group(1))}
        return {value: value for value in sorted(values)}
    result = re.fullmatch(r"query_result\((.*)\)", query, flags=re.DOTALL)
    assert result is not None, query
    pattern = python_regex(variable["regex"])
    options: dict[str, str] = {}
    for series in prometheus.vector(result.group(1)):
        found = pattern.search(grafana_series_text(series))
        assert found is not None, grafana_series_text(series)
        value = found.group("value")
        options[value] = found.groupdict().get("text") or value
    return options


@pytest.fixture(scope="module")
def quota_scopes(prometheus: Prometheus, variables_before_quota: dict[str, str]) -> list[str]:
    """Every account and region the quota row repeats for."""
    dashboard = load_dashboard()
    variable = template_variable(dashboard, "quota_scope")
    variable = {
        **variable,
        "query": {"query": interpolate(variable_query(variable), variables_before_quota)},
    }
    return sorted(variable_options(prometheus, variable))


@pytest.fixture(scope="module")
def variables_before_quota(prometheus: Prometheus, pools: dict[str, str]) -> dict[str, str]:
    dashboard = load_dashboard()
    chosen = {**GRAFANA_INTERVALS}
    for name in ("job", "instance"):
        variable = template_variable(dashboard, name)
        variable = {
            **variable,
            "query": {"query": interpolate(variable_query(variable), chosen)},
        }
        chosen[name] = prometheus_regex_alternation(sorted(variable_options(prometheus, variable)))
    return {**chosen, "pool": prometheus_regex_alternation(sorted(pools))}


@pytest.fixture(scope="module")
def variables(variables_before_quota: dict[str, str], quota_scopes: list[str]) -> dict[str, str]:
    """The dashboard's variables with every job, instance and pool selected, the first
    account and region of the repeated quota row, plus Grafana's built-ins."""
    return {**variables_before_quota, "quota_scope": quota_scopes[0]}


def walk(node: object) -> Iterator[tuple[str, object]]:
    """Every (key, value) pair of every object nested in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def columns_after_transformations(panel: Json, results: dict[str, list[Json]]) -> list[str]:
    """The columns a table panel shows, from Prometheus' results per refId.

    Follows what Grafana does: an instant query in table format gives one frame with a Time
    column, one column per label and the value ("Value #<refId>" when the panel has several
    queries); then the panel's transformations apply in order.
    """
    several = len(panel["targets"]) > 1
    frames: list[dict[str, list[object]]] = []
    for target in panel["targets"]:
        rows = results[target["refId"]]
        value_column = f"Value #{target['refId']}" if several else "Value"
        labels = sorted({key for row in rows for key in row["metric"] if key != "__name__"})
        frame: dict[str, list[object]] = {"Time": [row["value"][0] for row in rows]}
        for label in labels:
            frame[label] = [row["metric"].get(label) for row in rows]
        frame[value_column] = [row["value"][1] for row in rows]
        frames.append(frame)

    for transformation in panel.get("transformations", []):
        options = transformation["options"]
        if transformation["id"] == "merge":
            merged: dict[str, list[object]] = {}
            for frame in frames:
                for column, values in frame.items():
                    merged.setdefault(column, []).extend(values)
            frames = [merged]
        elif transformation["id"] == "groupingToMatrix":
            assert len(frames) == 1, "groupingToMatrix works on a single frame"
            (frame,) = frames
            row, column, value = options["rowField"], options["columnField"], options["valueField"]
            assert {row, column, value} <= set(frame), f"{panel['title']}: {options}"
            matrix: dict[str, list[object]] = {f"{row}\\{column}": list(dict.fromkeys(frame[row]))}
            for name in dict.fromkeys(frame[column]):
                matrix[str(name)] = []
            frames = [matrix]
        elif transformation["id"] == "organize":
            assert len(frames) == 1, "organize is applied after the frames are merged"
            (frame,) = frames
            for option in ("excludeByName", "indexByName", "renameByName"):
                unknown = set(options.get(option, {})) - set(frame)
                assert not unknown, f"{panel['title']}: {option} names missing columns {unknown}"
            order = options.get("indexByName", {})
            shown = sorted(
                (column for column in frame if not options.get("excludeByName", {}).get(column)),
                key=lambda column: order.get(column, len(order)),
            )
            renames = options.get("renameByName", {})
            frames = [{renames.get(column, column): frame[column] for column in shown}]
        else:
            raise AssertionError(f"{panel['title']}: transformation {transformation['id']} unknown")
    return [column for frame in frames for column in frame]


def panel_named(dashboard: Json, title: str) -> Json:
    for panel in data_panels(dashboard):
        if panel["title"] == title:
            return panel
    raise AssertionError(f"no panel {title!r}")


def run_targets(
    panel: Json, prometheus: Prometheus, variables: dict[str, str]
) -> dict[str, list[Json]]:
    """Each target's result, all evaluated at one instant as Grafana does.

    The instant lies two scrape intervals back, so that no scrape is still being ingested and
    every query sees the same scrape.
    """
    at = time.time() - 2 * SCRAPE_INTERVAL_SECONDS
    return {
        target["refId"]: prometheus.vector(interpolate(target["expr"], variables), at)
        for target in panel["targets"]
    }


def test_dashboard_has_no_fixed_datasource_or_id() -> None:
    dashboard = load_dashboard()

    assert dashboard["id"] is None
    assert dashboard["uid"] == DASHBOARD_UID
    assert dashboard["schemaVersion"] == 39
    datasource = template_variable(dashboard, "datasource")
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")

    body = {key: value for key, value in dashboard.items() if key != "uid"}
    references = [value for key, value in walk(body) if key == "datasource"]
    uids = [value for key, value in walk(body) if key == "uid"]
    # One reference per panel, one per target and one per query variable (job, instance, pool,
    # quota_scope), all ${datasource}.
    assert len(data_panels(dashboard)) == PANEL_COUNT
    assert len(panel_queries(dashboard)) == TARGET_COUNT
    assert references == [DATASOURCE_REF] * (PANEL_COUNT + TARGET_COUNT + QUERY_VARIABLES)
    assert uids == ["${datasource}"] * (PANEL_COUNT + TARGET_COUNT + QUERY_VARIABLES)
    for panel in data_panels(dashboard):
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, (panel["title"], target["refId"])


def test_panels_are_described_and_do_not_overlap() -> None:
    dashboard = load_dashboard()
    panels = all_panels(dashboard)

    assert len({panel["id"] for panel in panels}) == len(panels)
    undescribed = [
        panel["title"] for panel in data_panels(dashboard) if not panel.get("description")
    ]
    assert undescribed == []
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]
    assert [panel["title"] for panel in panels if panel["type"] == "row"] == [
        "Overview",
        "Import jobs",
        "Users",
        "Recent jobs",
        "Exporter health",
        "Request quota: $quota_scope",
    ]
    without_unit = [
        panel["title"]
        for panel in data_panels(dashboard)
        if not panel["fieldConfig"]["defaults"].get("unit")
    ]
    assert without_unit == []


def test_provisioning_points_grafana_at_the_dashboard_folder() -> None:
    dashboards = yaml.safe_load((PROVISIONING_DIR / "dashboards.yaml").read_text(encoding="utf-8"))
    datasources = yaml.safe_load(
        (PROVISIONING_DIR / "datasources.yaml").read_text(encoding="utf-8")
    )

    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/cognito-import-exporter"
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert (source["type"], source["access"]) == ("prometheus", "proxy")
    assert source["jsonData"]["timeInterval"] == "60s"


def test_every_panel_query_returns_data(prometheus: Prometheus, variables: dict[str, str]) -> None:
    queries = panel_queries(load_dashboard())
    errors: dict[str, str] = {}
    empty: list[str] = []

    def all_return_data() -> bool:
        empty.clear()
        for query in queries:
            expr = interpolate(query.expr, variables)
            # A time series panel runs its queries over the time range as well.
            answers = {"instant": prometheus.query(expr)}
            if not query.instant:
                answers["range"] = prometheus.query_range(
                    expr, RANGE_QUERY_SECONDS, SCRAPE_INTERVAL_SECONDS
                )
            for kind, body in answers.items():
                name = f"{query.panel} [{query.ref_id}] {kind}"
                if body["status"] != "success":
                    errors[name] = str(body.get("error"))
                elif not body["data"]["result"]:
                    empty.append(name)
        return bool(errors) or not empty

    holds_within(all_return_data, DATA_DEADLINE_SECONDS)  # what stayed empty is asserted below
    assert len(queries) == TARGET_COUNT
    assert errors == {}
    assert empty == []


def test_pool_variable_lists_every_pool_by_name(
    prometheus: Prometheus, pools: dict[str, str], variables_before_quota: dict[str, str]
) -> None:
    variable = template_variable(load_dashboard(), "pool")
    query = variable_query(variable)
    chosen = {**variable, "query": {"query": interpolate(query, variables_before_quota)}}
    options = variable_options(prometheus, chosen)

    scraped = {
        s["metric"]["user_pool_id"] for s in prometheus.vector("cognito_user_import_scrape_success")
    }
    assert (variable["multi"], variable["includeAll"]) == (True, True)
    assert variable["datasource"] == DATASOURCE_REF
    assert options == pools == configured_demo_pools()
    assert set(options) == scraped


def test_recent_jobs_table_shows_every_column_for_every_job(
    prometheus: Prometheus, variables: dict[str, str]
) -> None:
    panel = panel_named(load_dashboard(), "Recent jobs")
    results = run_targets(panel, prometheus, variables)

    def jobs(ref_id: str) -> set[tuple[str, str]]:
        return {(r["metric"]["user_pool_id"], r["metric"]["job_id"]) for r in results[ref_id]}

    assert columns_after_transformations(panel, results) == RECENT_JOBS_COLUMNS
    listed = jobs("A")
    assert listed
    # Every listed job has a creation time and user counts; start and completion are optional.
    assert [jobs(ref) == listed for ref in "BEFG"] == [True] * 4
    assert jobs("C") <= listed
    assert jobs("D") <= listed


def test_jobs_by_status_matrix_has_a_row_per_pool_and_a_column_per_status(
    prometheus: Prometheus, variables: dict[str, str], pools: dict[str, str]
) -> None:
    panel = panel_named(load_dashboard(), "Jobs by status per pool")
    results = run_targets(panel, prometheus, variables)

    assert columns_after_transformations(panel, results) == ["Pool", *JOB_STATUSES]
    rows = sorted({r["metric"]["pool"] for r in results["A"]})
    collected = {
        s["metric"]["user_pool_id"]
        for s in prometheus.vector("cognito_user_import_scrape_success == 1")
    }
    # a pool that fails to collect has no job counts, so no row
    assert RETIRED_POOL[0] not in collected
    assert rows == sorted(
        f"{name} / {pool_id}" for pool_id, name in pools.items() if pool_id in collected
    )


def test_job_and_instance_variables_list_the_scraped_exporter(
    variables_before_quota: dict[str, str], exporter_address: str
) -> None:
    assert variables_before_quota["job"] == prometheus_regex_alternation(
        ["cognito-import-exporter"]
    )
    assert variables_before_quota["instance"] == prometheus_regex_alternation([exporter_address])


def test_the_quota_row_repeats_for_each_account_and_region_with_data(
    prometheus: Prometheus, variables: dict[str, str], quota_scopes: list[str]
) -> None:
    dashboard = load_dashboard()
    (row,) = [panel for panel in dashboard["panels"] if panel.get("repeat") == "quota_scope"]
    assert row["title"] == "Request quota: $quota_scope"
    # the demo's pools: one account, in each region a pool of it is in
    assert quota_scopes == [
        f'account_id="{DEFAULT_ACCOUNT_ID}",region="{region}"'
        for region in sorted({pool_id.split("_")[0] for pool_id in configured_demo_pools()})
    ]
    for scope in quota_scopes:
        chosen = {**variables, "quota_scope": scope}
        quota = panel_named(dashboard, "Quota, budget and requests sent")
        results = run_targets(quota, prometheus, chosen)
        # one series each, for that account and region only: the simulator's quota of 20/s,
        # half of it as the budget, and what was sent
        for ref_id in "ABC":
            (series,) = results[ref_id]
            assert series["metric"] == {
                "account_id": DEFAULT_ACCOUNT_ID,
                "region": scope.split('region="')[1].rstrip('"'),
            }
        assert float(results["A"][0]["value"][1]) == 20
        assert float(results["B"][0]["value"][1]) == 10
        assert float(results["C"][0]["value"][1]) > 0
        throttles = run_targets(panel_named(dashboard, "Throttled requests"), prometheus, chosen)
        assert len(throttles["A"]) == 1
        # the demo's few pools are all refreshed at every scrape: nothing behind, and full
        # re-reads at the configured 10 minutes
        behind = run_targets(panel_named(dashboard, "Refresh behind"), prometheus, chosen)
        assert [float(series["value"][1]) for series in behind["A"]] == [0.0]
        interval = run_targets(
            panel_named(dashboard, "Full re-read interval in force"), prometheus, chosen
        )
        assert [float(series["value"][1]) for series in interval["A"]] == [600.0]


def test_pools_not_reporting_lists_the_failing_pool_with_its_error_code(
    prometheus: Prometheus, variables: dict[str, str]
) -> None:
    panel = panel_named(load_dashboard(), "Pools not reporting")
    results = run_targets(panel, prometheus, variables)
    assert columns_after_transformations(panel, results) == [
        "Pool",
        "Error code",
        "Errors in range",
    ]
    assert {(r["metric"]["user_pool_id"], r["metric"]["error_code"]) for r in results["A"]} == {
        (RETIRED_POOL[0], "ResourceNotFound")
    }


def test_data_age_shows_every_collected_pool_and_the_stale_threshold(
    prometheus: Prometheus, variables: dict[str, str], pools: dict[str, str]
) -> None:
    panel = panel_named(load_dashboard(), "Data age per pool")
    ages = {
        series["metric"]["user_pool_id"]: float(series["value"][1])
        for series in run_targets(panel, prometheus, variables)["A"]
    }
    # the retired pool was never collected, so it has no age; the others are collected at
    # every one-second scrape
    assert sorted(ages) == sorted(pool_id for pool_id in pools if pool_id != RETIRED_POOL[0])
    assert all(0 <= age < 10 for age in ages.values()), ages
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "red", "value": 900}
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "dashed"}
