"""Kubernetes objects run as a pod with `podman kube play`, torn down with `podman kube down`.

Podman plays Pods, Deployments, ConfigMaps, Secrets and PersistentVolumeClaims; the other kinds
(Services, ServiceAccounts, the Prometheus Operator's) are a cluster's business and are left out.
It honours the securityContext (user, read-only root, capabilities), emptyDir and configMap
volumes, and publishes a container port only where it names a hostPort. Podman 4.3 plays a
Secret but cannot mount one as a volume (it crashes without `optional`, mounts nothing with
`optional: true`; later releases mount it).
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.container_image import podman, podman_env
from tests.tools import require_tool

Json = dict[str, Any]
PLAYABLE_KINDS = frozenset({"Pod", "Deployment", "ConfigMap", "Secret", "PersistentVolumeClaim"})


@dataclass(frozen=True)
class PlayedPod:
    name: str

    def container(self, name: str) -> str:
        """The podman name of one of the pod's containers."""
        return f"{self.name}-{name}"


def playable(objects: list[Json]) -> list[Json]:
    return [copy.deepcopy(obj) for obj in objects if obj["kind"] in PLAYABLE_KINDS]


def pod_exists(name: str) -> bool:
    result = subprocess.run(
        [require_tool("podman"), "pod", "exists", name],
        env=podman_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


@contextmanager
def playing(objects: list[Json], workdir: Path) -> Iterator[PlayedPod]:
    """The objects' one Deployment playing as a pod; torn down afterwards."""
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    manifest = workdir / "kube.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False), encoding="utf-8")
    pod = PlayedPod(f"{deployment['metadata']['name']}-pod-0")
    try:
        podman("kube", "play", "--replace", str(manifest), timeout=300)
        yield pod
    finally:
        # a play that failed leaves no pod to take down, and its own error to tell
        if pod_exists(pod.name):
            podman("kube", "down", str(manifest), timeout=120)
        # kube down leaves the volumes that kube play made of the ConfigMaps, and the Secrets
        for config_map in (obj for obj in objects if obj["kind"] == "ConfigMap"):
            podman("volume", "rm", "--force", config_map["metadata"]["name"])
        played_secrets = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Secret"}
        if played_secrets:
            present = set(podman("secret", "ls", "--format", "{{.Name}}").stdout.split())
            for name in sorted(played_secrets & present):
                podman("secret", "rm", name)
