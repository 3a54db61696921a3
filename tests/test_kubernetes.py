"""The Kubernetes kit in deploy/kubernetes, built with kustomize and checked as a cluster would.

kubectl kustomize renders the kit; the core objects are validated against the Kubernetes API
schemas, and the rest is checked field by field: the exporter sidecar's hardening and probes,
IRSA, the configuration it mounts, how the ServiceMonitor finds it, and the PrometheusRule,
which must carry exactly the groups of prometheus/alerts.yml. The native sidecar variant
(deploy/kubernetes-native-sidecar) is the same kit with the exporter moved into the init
containers with restartPolicy Always.

Both files are generated from the monitoring mixin (tests/test_mixin.py keeps them so).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from exporter import __version__
from tests.tools import config_check, require_tool

REPO = Path(__file__).resolve().parent.parent
KIT = REPO / "deploy" / "kubernetes"
NATIVE_SIDECAR_KIT = REPO / "deploy" / "kubernetes-native-sidecar"
ALERTS_FILE = REPO / "prometheus" / "alerts.yml"
PROMETHEUS_RULE_FILE = KIT / "prometheusrule.yaml"
CONFIG_FILE = KIT / "config.yaml"

# The oldest release the kit is meant for, and a recent one.
KUBERNETES_VERSIONS = ("1.29", "1.33")
OPERATOR_API = "monitoring.coreos.com/v1"

APP_NAME = "example-app"
EXPORTER = "cognito-import-exporter"
EXPORTER_IMAGE = f"ghcr.io/cognito-import-exporter/cognito-import-exporter:{__version__}"
EXPORTER_PORT = 10209
CONFIG_MAP_PREFIX = "cognito-import-exporter-config-"
CONFIG_DIR = "/etc/cognito-import-exporter"
STATE_DIR = "/var/lib/cognito-import-exporter"
ROLE_ARN = "arn:aws:iam::123456789012:role/cognito-import-exporter"
NONROOT_UID = 65532
# The job label the alert rules select on (up{job="cognito-import-exporter"}).
SCRAPE_JOB = "cognito-import-exporter"

Json = dict[str, Any]


def build_kit(kit: Path = KIT) -> list[Json]:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(kit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def objects() -> list[Json]:
    return build_kit()


@pytest.fixture(scope="module")
def native_sidecar_objects() -> list[Json]:
    return build_kit(NATIVE_SIDECAR_KIT)


def the_one(objects: list[Json], kind: str) -> Json:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[Json], name: str) -> Json:
    pod_spec = the_one(objects, "Deployment")["spec"]["template"]["spec"]
    (found,) = [c for c in pod_spec["containers"] if c["name"] == name]
    return dict(found)


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match is not None, f"{duration!r} is not a duration in whole seconds"
    return int(match.group(1))


def test_kit_renders_the_sidecar_deployment_and_its_monitoring(objects: list[Json]) -> None:
    names = sorted((obj["kind"], obj["metadata"]["name"]) for obj in objects)
    config_map = the_one(objects, "ConfigMap")["metadata"]["name"]

    assert config_map.startswith(CONFIG_MAP_PREFIX)
    assert names == [
        ("ConfigMap", config_map),
        ("Deployment", APP_NAME),
        ("PrometheusRule", "cognito-import-exporter"),
        ("Service", "example-app-metrics"),
        ("ServiceAccount", APP_NAME),
        ("ServiceMonitor", "example-app-cognito-import-exporter"),
    ]


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_core_objects_validate_against_the_kubernetes_schemas(
    objects: list[Json], kubernetes_version: str
) -> None:
    core = [obj for obj in objects if obj["apiVersion"] != OPERATOR_API]

    validated = {
        obj["kind"]: kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        for obj in core
    }

    assert validated == {
        "ConfigMap": kubernetes_version,
        "Deployment": kubernetes_version,
        "Service": kubernetes_version,
        "ServiceAccount": kubernetes_version,
    }


def test_strict_validation_rejects_a_misspelt_field(objects: list[Json]) -> None:
    deployment = the_one(objects, "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][1]["readOnlyRootFileSystem"] = True

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_exporter_runs_the_release_image_with_the_mounted_config(objects: list[Json]) -> None:
    exporter = container(objects, EXPORTER)

    assert exporter["image"] == EXPORTER_IMAGE
    assert exporter["args"] == [
        f"--config.file={CONFIG_DIR}/config.yaml",
        f"--web.listen-address=:{EXPORTER_PORT}",
        "--log.format=json",
        f"--storage.path={STATE_DIR}/histories",
    ]
    assert exporter["ports"] == [
        {"name": "metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}
    ]


def test_exporter_container_is_hardened(objects: list[Json]) -> None:
    pod_spec = the_one(objects, "Deployment")["spec"]["template"]["spec"]
    exporter = container(objects, EXPORTER)

    assert exporter["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": NONROOT_UID,
        "runAsGroup": NONROOT_UID,
        "fsGroup": NONROOT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert exporter["resources"] == {
        "requests": {"cpu": "25m", "memory": "96Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_every_container_has_a_read_only_root_and_resource_bounds(objects: list[Json]) -> None:
    pod_spec = the_one(objects, "Deployment")["spec"]["template"]["spec"]

    for each in pod_spec["containers"]:
        context = each["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, each["name"]
        assert context["allowPrivilegeEscalation"] is False, each["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, each["name"]
        assert set(each["resources"]["requests"]) == {"cpu", "memory"}, each["name"]
        assert set(each["resources"]["limits"]) == {"cpu", "memory"}, each["name"]
    assert [each["name"] for each in pod_spec["containers"]] == ["app", EXPORTER]


def test_exporter_probes_use_the_health_endpoints(objects: list[Json]) -> None:
    exporter = container(objects, EXPORTER)

    assert exporter["livenessProbe"] == {
        "httpGet": {"path": "/-/healthy", "port": "metrics"},
        "initialDelaySeconds": 5,
        "periodSeconds": 20,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    assert exporter["readinessProbe"] == {
        "httpGet": {"path": "/-/ready", "port": "metrics"},
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def test_only_the_exporter_receives_the_irsa_role(objects: list[Json]) -> None:
    service_account = the_one(objects, "ServiceAccount")
    template = the_one(objects, "Deployment")["spec"]["template"]
    container_names = [each["name"] for each in template["spec"]["containers"]]

    assert service_account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert template["spec"]["serviceAccountName"] == service_account["metadata"]["name"]
    skipped = template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    assert skipped.split(",") == [name for name in container_names if name != EXPORTER]


def test_exporter_mounts_the_generated_config_map(objects: list[Json]) -> None:
    config_map = the_one(objects, "ConfigMap")
    pod_spec = the_one(objects, "Deployment")["spec"]["template"]["spec"]
    exporter = container(objects, EXPORTER)
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in exporter["volumeMounts"]}

    assert config_map["data"] == {"config.yaml": CONFIG_FILE.read_text(encoding="utf-8")}
    assert mounts[CONFIG_DIR] == {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}
    assert volumes["config"] == {
        "name": "config",
        "configMap": {"name": config_map["metadata"]["name"]},
    }
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Mi"}
    # pool histories on the pod's disk: they outlive a container restart
    assert mounts[STATE_DIR] == {"name": "state", "mountPath": STATE_DIR}
    assert volumes["state"]["emptyDir"] == {"sizeLimit": "256Mi"}


def test_mounted_config_passes_the_exporters_config_check(
    objects: list[Json], tmp_path: Path
) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text(the_one(objects, "ConfigMap")["data"]["config.yaml"], encoding="utf-8")

    result = config_check(config_file)

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{config_file}: valid, 1 pools, 1 credential sets\n"


def test_service_exposes_the_exporter_port_of_the_deployments_pods(objects: list[Json]) -> None:
    service = the_one(objects, "Service")
    pod_labels = the_one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": EXPORTER_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert [port["name"] for port in container(objects, EXPORTER)["ports"]] == ["metrics"]


def test_service_monitor_selects_the_service_and_its_metrics_port(objects: list[Json]) -> None:
    monitor = the_one(objects, "ServiceMonitor")
    service = the_one(objects, "Service")
    (endpoint,) = monitor["spec"]["endpoints"]

    assert monitor["apiVersion"] == OPERATOR_API
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/component": "metrics",
    }
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert endpoint["relabelings"] == [{"targetLabel": "job", "replacement": SCRAPE_JOB}]


def test_scrape_timeouts_leave_the_exporter_time_to_answer(objects: list[Json]) -> None:
    (endpoint,) = the_one(objects, "ServiceMonitor")["spec"]["endpoints"]
    config = yaml.safe_load(the_one(objects, "ConfigMap")["data"]["config.yaml"])

    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("60s", "30s")
    assert seconds(config["scrape"]["timeout"]) < seconds(endpoint["scrapeTimeout"])


def test_alert_rules_select_the_job_the_service_monitor_sets() -> None:
    alerts = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    exprs = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]

    selected_jobs = {job for expr in exprs for job in re.findall(r'\bjob="([^"]*)"', expr)}

    assert selected_jobs == {SCRAPE_JOB}


def test_prometheus_rule_carries_exactly_the_alert_rule_groups(objects: list[Json]) -> None:
    rule = the_one(objects, "PrometheusRule")
    alerts = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))

    assert rule["apiVersion"] == OPERATOR_API
    assert rule["spec"] == {"groups": alerts["groups"]}
    assert [group["name"] for group in rule["spec"]["groups"]] == [
        "cognito-user-import-jobs",
        "cognito-import-exporter",
    ]


def test_pod_mounts_no_service_account_token(objects: list[Json]) -> None:
    pod_spec = the_one(objects, "Deployment")["spec"]["template"]["spec"]

    assert pod_spec["automountServiceAccountToken"] is False


# --- the native sidecar variant ---------------------------------------------------------------


def test_native_sidecar_moves_only_the_exporter_into_the_init_containers(
    objects: list[Json], native_sidecar_objects: list[Json]
) -> None:
    sidecar_spec = the_one(native_sidecar_objects, "Deployment")["spec"]["template"]["spec"]
    (init_container,) = sidecar_spec["initContainers"]
    classic = the_one(objects, "Deployment")
    exporter = container(objects, EXPORTER)

    assert init_container == {**exporter, "restartPolicy": "Always"}
    assert [each["name"] for each in sidecar_spec["containers"]] == ["app"]
    moved_back = yaml.safe_load(yaml.safe_dump(the_one(native_sidecar_objects, "Deployment")))
    moved_back_spec = moved_back["spec"]["template"]["spec"]
    del moved_back_spec["initContainers"]
    moved_back_spec["containers"].append(exporter)
    assert moved_back == classic
    others = sorted(
        (obj["kind"], obj["metadata"]["name"])
        for obj in native_sidecar_objects
        if obj["kind"] != "Deployment"
    )
    assert others == sorted(
        (obj["kind"], obj["metadata"]["name"]) for obj in objects if obj["kind"] != "Deployment"
    )


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_native_sidecar_validates_against_the_kubernetes_schemas(
    native_sidecar_objects: list[Json], kubernetes_version: str
) -> None:
    deployment = the_one(native_sidecar_objects, "Deployment")

    assert kubernetes_validate.validate(deployment, kubernetes_version, strict=True) == (
        kubernetes_version
    )
