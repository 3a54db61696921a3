"""The kustomize kit run as a pod: `kubectl kustomize deploy/kubernetes`, played by podman with the
image the repository's Dockerfile builds, scraped by a real Prometheus, then torn down.

Two things differ from a cluster, both in the test's copy of the rendered objects: the
application placeholder's image (registry.k8s.io/pause, out of reach) becomes Debian's base
image waiting for SIGTERM, and the exporter gets `--demo` (a simulated Cognito; no AWS
account) and a hostPort, which is how podman publishes a port. Everything else, the
securityContext, the probes, the ConfigMap and the volumes, is the kit's. (Podman runs no
probes without systemd; the test asks /-/ready itself.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from tests.container_image import BuiltImage, base_image_name, built_image, podman
from tests.podman_pod import playable, playing, pod_exists
from tests.prometheus_releases import PrometheusRelease
from tests.prometheus_server import running_prometheus
from tests.test_kubernetes import (
    CONFIG_DIR,
    EXPORTER,
    NONROOT_UID,
    Json,
    build_kit,
)
from tests.tools import free_port, holds_within

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

READY_DEADLINE_SECONDS = 60.0
APP = "app"
DEMO_POOLS = 5
# Kubernetes' default terminationGracePeriodSeconds
GRACE_PERIOD_SECONDS = 30


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return built_image()


def kit_for_podman(image: BuiltImage, host_port: int) -> list[Json]:
    objects = playable(build_kit())
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    for each in deployment["spec"]["template"]["spec"]["containers"]:
        if each["name"] == APP:
            each["image"] = base_image_name()
            # a process 1 that ends on SIGTERM, as an application would
            each["command"] = ["sh", "-c", 'trap "exit 0" TERM; sleep infinity & wait']
        elif each["name"] == EXPORTER:
            each["image"] = image.name
            each["args"] = [*each["args"], "--demo"]
            (port,) = each["ports"]
            port["hostPort"] = host_port
    return objects


def ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=5, proxies={"http": "", "https": ""}).status_code == 200
    except requests.RequestException:
        return False


def test_kit_plays_as_a_pod_that_prometheus_scrapes_and_stops_cleanly(
    image: BuiltImage, prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    host_port = free_port()
    objects = kit_for_podman(image, host_port)
    target = f"127.0.0.1:{host_port}"

    with playing(objects, tmp_path) as pod:
        exporter = pod.container(EXPORTER)
        assert holds_within(lambda: ready(f"http://{target}/-/ready"), READY_DEADLINE_SECONDS), (
            podman("logs", exporter).stdout
        )
        user = podman("exec", exporter, "id", "-u").stdout.strip()
        capabilities = podman("exec", exporter, "grep", "^CapEff", "/proc/self/status").stdout
        write = podman("exec", exporter, "sh", "-c", "touch /opt/probe 2>&1; true").stdout
        config_check = podman(
            "exec",
            exporter,
            "cognito-import-exporter",
            "--config.check",
            f"--config.file={CONFIG_DIR}/config.yaml",
        ).stdout
        with running_prometheus(tmp_path, prometheus_release, [target]) as prometheus:
            # a pool whose first read does not fit one scrape's second has no scrape_success
            # yet (nothing failed): its read goes on at the next scrapes
            holds_within(
                lambda: len(prometheus.vector("cognito_user_import_scrape_success")) == DEMO_POOLS,
                READY_DEADLINE_SECONDS,
            )
            scraped = prometheus.vector("cognito_user_import_scrape_success")

        started = time.monotonic()
        podman("pod", "stop", f"--time={GRACE_PERIOD_SECONDS}", pod.name, timeout=120)
        stop_seconds = time.monotonic() - started
        state = json.loads(podman("inspect", "--format", "{{json .State}}", exporter).stdout)

    assert user == str(NONROOT_UID)
    assert capabilities.split() == ["CapEff:", "0000000000000000"]
    assert "Read-only file system" in write
    assert config_check == f"{CONFIG_DIR}/config.yaml: valid, 1 pools, 1 credential sets\n"
    assert len(scraped) == DEMO_POOLS
    assert {series["metric"]["job"] for series in scraped} == {"cognito-import-exporter"}
    assert (state["ExitCode"], stop_seconds < GRACE_PERIOD_SECONDS) == (0, True)
    assert not pod_exists(pod.name)
