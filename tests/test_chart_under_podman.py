"""The Helm chart run as a pod: `helm template` with values for podman, played by
`podman kube play` with the image the repository's Dockerfile builds, scraped by a real
Prometheus, then torn down.

The values are ones an operator could set: the built image, an inline configuration that
points at a simulated Cognito the test serves on the host's loopback, the chart's probes,
restricted security context and emptyDir storage; in the second scenario basic auth, with
the credentials Prometheus and the exec probe send in a Secret made outside the chart.
Three things differ from a cluster, all in the test's copy of the rendered objects: the pod
runs on the host's network (to reach the simulator), where the exporter listens on loopback
(the chart's --web.listen-address given the loopback address) and declares no port (podman
maps none there); and each Secret is played as a ConfigMap of the same keys, because podman
4.3 cannot mount a Secret as a volume (it crashes on one without `optional` and mounts
nothing with `optional: true`; later releases mount it). The files the container sees are
the same.
Podman runs no probes without systemd: the test runs the rendered exec probe itself with
`podman exec`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.demo.service import SimulatedCognito
from tests.container_image import BuiltImage, built_image, imported_base, podman, podman_env
from tests.podman_pod import PlayedPod, playable, playing, pod_exists
from tests.prometheus_releases import PrometheusRelease
from tests.prometheus_server import SCRAPE_JOB, running_prometheus_with
from tests.simulated import config_yaml, populate, serving
from tests.tools import free_port, holds_within, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts" / "cognito-import-exporter"
CONTAINER = "cognito-import-exporter"
NONROOT_UID = 65532
SIMULATED_POOL = "eu-west-1_Chart0001"
HISTORIES_DIR = "/var/lib/cognito-import-exporter/histories"
PROBE_AUTH_DIR = "/etc/cognito-import-exporter/probe-auth"
READY_DEADLINE_SECONDS = 60.0
STORED_DEADLINE_SECONDS = 30.0
# The chart's terminationGracePeriodSeconds
GRACE_PERIOD_SECONDS = 30
SCRAPE_USER = "prometheus"
# The password whose bcrypt hash the chart's ci/web-config-inline-values.yaml holds.
SCRAPE_PASSWORD = "example-password"
SCRAPE_PASSWORD_HASH = "$2b$10$QMA0xfZLdcfpNdISuNiyy.qaf0eT5axKYRmkBTinxcUBlcLCHVU/K"

Json = dict[str, Any]


def opaque_secret(name: str, strings: dict[str, str]) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {key: base64.b64encode(text.encode()).decode() for key, text in strings.items()},
    }


@dataclass(frozen=True)
class Scenario:
    name: str
    basic_auth: bool

    def values(self, release: str) -> Json:
        """Values beyond those every scenario sets."""
        if not self.basic_auth:
            return {}
        return {
            "webConfig": {
                "inline": {"basic_auth_users": {SCRAPE_USER: SCRAPE_PASSWORD_HASH}},
                "basicAuth": {"existingSecret": scrape_auth_secret(release)},
            }
        }

    def objects(self, release: str) -> list[Json]:
        """Objects made outside the chart, as an operator would."""
        if not self.basic_auth:
            return []
        credentials = {"username": SCRAPE_USER, "password": SCRAPE_PASSWORD}
        return [opaque_secret(scrape_auth_secret(release), credentials)]


def scrape_auth_secret(release: str) -> str:
    return f"{release}-scrape-auth"


SCENARIOS = (Scenario("default", basic_auth=False), Scenario("basic-auth", basic_auth=True))


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return built_image()


def podman_values(
    image: BuiltImage, endpoint: str, port: int, scenario: Scenario, release: str
) -> Json:
    repository, tag = image.name.rsplit(":", 1)
    return {
        "image": {"registry": "", "repository": repository, "tag": tag, "pullPolicy": "Never"},
        # the simulator's static keys: a Secret, as the schema wants for any static key
        "config": {
            "inline": yaml.safe_load(config_yaml(endpoint, [SIMULATED_POOL])),
            "secret": True,
        },
        "containerPort": port,
        **scenario.values(release),
    }


def rendered(release: str, values: Json, workdir: Path) -> list[Json]:
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values), encoding="utf-8")
    result = subprocess.run(
        [require_tool("helm"), "template", release, str(CHART), "-f", str(values_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def as_config_map(obj: Json) -> Json:
    """A Secret as a ConfigMap of the same keys and texts; other objects as they are."""
    if obj["kind"] != "Secret":
        return obj
    texts = {
        **{key: base64.b64decode(data).decode() for key, data in obj.get("data", {}).items()},
        **obj.get("stringData", {}),
    }
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"], "data": texts}


def secret_volumes_as_config_maps(spec: Json) -> None:
    for volume in spec["volumes"]:
        if "secret" in volume:
            source = volume.pop("secret")
            volume["configMap"] = {
                "name": source.pop("secretName"),
                **source,
            }


def chart_for_podman(objects: list[Json], extra_objects: list[Json]) -> list[Json]:
    played = [as_config_map(obj) for obj in [*extra_objects, *playable(objects)]]
    (deployment,) = [obj for obj in played if obj["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    # on the host's network a port is the process's own; podman refuses to map one there
    for container in spec["containers"]:
        (port,) = container.pop("ports")
        container["args"] = [
            f"--web.listen-address=127.0.0.1:{port['containerPort']}"
            if arg.startswith("--web.listen-address=")
            else arg
            for arg in container["args"]
        ]
    secret_volumes_as_config_maps(spec)
    return played


def get(url: str, auth: tuple[str, str] | None = None) -> requests.Response:
    return requests.get(url, auth=auth, timeout=5, proxies={"http": "", "https": ""})


def answers(url: str, auth: tuple[str, str] | None) -> bool:
    try:
        return get(url, auth).status_code == 200
    except requests.RequestException:
        return False


def exec_probe(exporter: str, probe: Json, credentials_dir: str) -> int:
    """The exit code of a rendered exec probe, run in the exporter's container with the
    credentials in that folder."""
    *command, _ = probe["exec"]["command"]
    result = subprocess.run(
        [require_tool("podman"), "exec", exporter, *command, credentials_dir],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode


def exec_probe_exits(exporter: str, container: Json) -> tuple[int, int, int]:
    """The liveness and readiness probes' exit codes with the mounted credentials, and the
    readiness probe's with a wrong password."""
    wrong = "/tmp/wrong-credentials"
    podman(
        "exec",
        exporter,
        "sh",
        "-c",
        f"mkdir -p {wrong} && printf {SCRAPE_USER} > {wrong}/username"
        f" && printf wrong > {wrong}/password",
    )
    return (
        exec_probe(exporter, container["livenessProbe"], PROBE_AUTH_DIR),
        exec_probe(exporter, container["readinessProbe"], PROBE_AUTH_DIR),
        exec_probe(exporter, container["readinessProbe"], wrong),
    )


@contextmanager
def simulator() -> Iterator[str]:
    model = SimulatedCognito(seed=11)
    populate(model, SIMULATED_POOL, 40, seed=11, active_newest=2)
    with serving(model) as endpoint:
        yield endpoint


def scrape_config(target: str, scenario: Scenario) -> Json:
    job: Json = {"job_name": SCRAPE_JOB, "static_configs": [{"targets": [target]}]}
    if scenario.basic_auth:
        job["basic_auth"] = {"username": SCRAPE_USER, "password": SCRAPE_PASSWORD}
    return {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [job]}


def stop_pod(pod: PlayedPod) -> float:
    started = time.monotonic()
    podman("pod", "stop", f"--time={GRACE_PERIOD_SECONDS}", pod.name, timeout=120)
    return time.monotonic() - started


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[each.name for each in SCENARIOS])
def test_chart_plays_as_a_pod_that_prometheus_scrapes_and_stops_cleanly(
    image: BuiltImage, prometheus_release: PrometheusRelease, scenario: Scenario, tmp_path: Path
) -> None:
    # a release of its own, so runs side by side do not replace each other's pod
    release = f"cie-{uuid.uuid4().hex[:8]}"
    port = free_port()
    target = f"127.0.0.1:{port}"
    auth = (SCRAPE_USER, SCRAPE_PASSWORD) if scenario.basic_auth else None
    with simulator() as endpoint:
        values = podman_values(image, endpoint, port, scenario, release)
        objects = rendered(release, values, tmp_path)
        (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        with playing(chart_for_podman(objects, scenario.objects(release)), tmp_path) as pod:
            exporter = pod.container(CONTAINER)
            assert holds_within(
                lambda: answers(f"http://{target}/-/ready", auth), READY_DEADLINE_SECONDS
            ), podman("logs", exporter).stdout + podman("logs", exporter).stderr
            unauthenticated = get(f"http://{target}/metrics").status_code
            user = podman("exec", exporter, "id", "-u").stdout.strip()
            capabilities = podman("exec", exporter, "grep", "^CapEff", "/proc/self/status").stdout
            write = podman("exec", exporter, "sh", "-c", "touch /opt/probe 2>&1; true").stdout
            probe_exits = exec_probe_exits(exporter, container) if scenario.basic_auth else None
            with running_prometheus_with(
                tmp_path,
                prometheus_release,
                scrape_config(target, scenario),
                f'up{{job="{SCRAPE_JOB}"}} == 1',
            ) as prometheus:
                scraped = prometheus.vector("cognito_user_import_scrape_success")

            def stored_by_owner() -> list[str]:
                found = podman(
                    "exec", exporter, "find", HISTORIES_DIR, "-type", "f", "-printf", "%u\\n"
                )
                return found.stdout.split()

            history_stored = holds_within(lambda: bool(stored_by_owner()), STORED_DEADLINE_SECONDS)
            history_owners = stored_by_owner()
            stop_seconds = stop_pod(pod)
            state = json.loads(podman("inspect", "--format", "{{json .State}}", exporter).stdout)
            logs = podman("logs", exporter)

    assert user == str(NONROOT_UID)
    assert capabilities.split() == ["CapEff:", "0000000000000000"]
    assert "Read-only file system" in write
    assert unauthenticated == (401 if scenario.basic_auth else 200)
    assert probe_exits == ((0, 0, 1) if scenario.basic_auth else None)
    assert [(series["metric"]["user_pool_id"], series["value"][1]) for series in scraped] == [
        (SIMULATED_POOL, "1")
    ]
    assert {series["metric"]["job"] for series in scraped} == {SCRAPE_JOB}
    assert (history_stored, history_owners) == (True, [str(NONROOT_UID)])
    assert (state["ExitCode"], stop_seconds < GRACE_PERIOD_SECONDS) == (0, True), (
        logs.stdout + logs.stderr
    )
    assert not pod_exists(pod.name)


def test_a_played_secret_is_gone_after_the_teardown(tmp_path: Path) -> None:
    """kube down leaves the Secrets kube play made; playing removes them."""
    require_tool("podman")
    name = f"secret-play-{uuid.uuid4().hex[:8]}"
    labels = {"app.kubernetes.io/name": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": imported_base(),
                            "command": ["sh", "-c", 'trap "exit 0" TERM; sleep infinity & wait'],
                        }
                    ]
                },
            },
        },
    }
    secret = opaque_secret(f"{name}-credentials", {"password": SCRAPE_PASSWORD})

    def secrets() -> set[str]:
        return set(podman("secret", "ls", "--format", "{{.Name}}").stdout.split())

    with playing([secret, deployment], tmp_path) as pod:
        while_playing = secrets()

    assert f"{name}-credentials" in while_playing
    assert f"{name}-credentials" not in secrets()
    assert not pod_exists(pod.name)
