"""The container image, built from the repository's Dockerfile with podman and run as Kubernetes
runs it: read-only root filesystem, uid 65532, no capabilities, no privilege escalation, /tmp
and the storage path on their own volumes. It serves the demo, answers /metrics and
/-/healthy, and stops cleanly on SIGTERM within the grace period. It holds what
requirements.lock pins and nothing to build or test with. Against the simulator it reads a
pool through its mounted configuration and keeps the pool's history on the storage volume.
"""

from __future__ import annotations

import json
import re
import resource
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from exporter import __version__
from exporter.demo.service import SimulatedCognito
from tests.container_image import CONTAINERS_CONF, BuiltImage, built_image, podman
from tests.exporter_process import samples, value
from tests.simulated import assert_exact, config_yaml, populate, serving
from tests.test_lock import RUNTIME_LOCK, pins
from tests.tools import free_port, holds_within

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PORT = 10209
STATE_DIR = "/var/lib/cognito-import-exporter"
CONFIG_DIR = "/etc/cognito-import-exporter"
SIMULATED_POOL = "eu-west-1_Image0001"
READY_DEADLINE_SECONDS = 60.0
# Kubernetes' default terminationGracePeriodSeconds
GRACE_PERIOD_SECONDS = 30
# The image as built on Debian's slim base: the base (~78 MB), Debian's Python (~45 MB) and
# the locked dependencies (~60 MB, botocore's service data the largest part).
MAX_IMAGE_BYTES = 200_000_000
NONROOT = "65532:65532"
# Python on the image: Debian bookworm's.
IMAGE_PYTHON = (3, 11)


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return built_image()


def in_image(image: BuiltImage, *command: str) -> str:
    """The output of a command run in a throwaway container of the image."""
    entrypoint, *args = command
    return podman(
        "run", "--rm", "--network=none", f"--entrypoint={entrypoint}", image.name, *args
    ).stdout


@dataclass(frozen=True)
class Container:
    name: str
    url: str


@contextmanager
def running_as_kubernetes_would(
    image: BuiltImage,
    *args: str,
    host_listen_port: int | None = None,
    mounts: tuple[str, ...] = (),
) -> Iterator[Container]:
    """The image in a container hardened as the kit's securityContext asks, removed afterwards
    with its state volume. Its port 10209 is published on loopback; with `host_listen_port` it
    runs on the host's network instead (to reach a simulator on loopback), listening on that
    port as `args` say."""
    name = f"cognito-import-exporter-test-{uuid.uuid4().hex[:8]}"
    state = f"{name}-state"
    if host_listen_port is None:
        port = free_port()
        network = [f"--publish=127.0.0.1:{port}:{PORT}"]
    else:
        port = host_listen_port
        network = ["--network=host"]
    podman("volume", "create", state)
    try:
        podman(
            "run",
            "--detach",
            f"--name={name}",
            "--read-only",
            "--read-only-tmpfs=false",
            "--tmpfs=/tmp:rw,size=16m",
            f"--volume={state}:{STATE_DIR}:U",
            *(f"--volume={mount}" for mount in mounts),
            f"--user={NONROOT}",
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            *network,
            image.name,
            *args,
        )
        yield Container(name, f"http://127.0.0.1:{port}")
    finally:
        podman("rm", "--force", "--time=0", name)
        podman("volume", "rm", "--force", state)


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=5, proxies={"http": "", "https": ""})


def wait_until_healthy(container: Container) -> None:
    def healthy() -> bool:
        try:
            return get(f"{container.url}/-/healthy").status_code == 200
        except requests.RequestException:
            return False

    if not holds_within(healthy, READY_DEADLINE_SECONDS, interval=0.2):
        logs = podman("logs", container.name).stdout
        raise AssertionError(f"{container.name} not healthy in time:\n{logs}")


def test_image_serves_the_demo_hardened_and_stops_cleanly_on_sigterm(image: BuiltImage) -> None:
    with running_as_kubernetes_would(
        image, "--demo", f"--web.listen-address=:{PORT}", f"--storage.path={STATE_DIR}"
    ) as container:
        wait_until_healthy(container)
        health = get(f"{container.url}/-/healthy")
        metrics = get(f"{container.url}/metrics")
        user = podman("exec", container.name, "id", "-u").stdout.strip()

        started = time.monotonic()
        podman("stop", f"--time={GRACE_PERIOD_SECONDS}", container.name, timeout=120)
        stop_seconds = time.monotonic() - started
        state = json.loads(podman("inspect", "--format", "{{json .State}}", container.name).stdout)
        logs = podman("logs", container.name)

    assert (health.status_code, metrics.status_code, user) == (200, 200, "65532")
    assert f'cognito_user_import_exporter_build_info{{version="{__version__}"}} 1.0' in (
        metrics.text
    )
    successes = re.findall(
        r'^cognito_user_import_scrape_success\{user_pool_id="([^"]+)"\} (\S+)$',
        metrics.text,
        re.MULTILINE,
    )
    assert sorted(successes) == [
        ("ap-southeast-2_Legacy4", "1.0"),
        ("eu-west-1_Cust0mers1", "1.0"),
        ("eu-west-1_Partn3rs22", "1.0"),
        ("eu-west-1_Retired99", "0.0"),
        ("us-east-1_Staff00333", "1.0"),
    ]
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), logs.stdout + logs.stderr
    assert stop_seconds < GRACE_PERIOD_SECONDS
    assert "Traceback" not in logs.stdout + logs.stderr


def test_image_collects_the_pool_of_its_mounted_config_and_stores_its_history(
    image: BuiltImage, tmp_path: Path
) -> None:
    model = SimulatedCognito(seed=7)
    populate(model, SIMULATED_POOL, 90, seed=7, active_newest=2)
    config = tmp_path / "config.yaml"
    with serving(model) as endpoint:
        config.write_text(config_yaml(endpoint, [SIMULATED_POOL]), encoding="utf-8")
        config.chmod(0o644)
        port = free_port()
        with running_as_kubernetes_would(
            image,
            f"--config.file={CONFIG_DIR}/config.yaml",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.path={STATE_DIR}",
            host_listen_port=port,
            mounts=(f"{config}:{CONFIG_DIR}/config.yaml:ro",),
        ) as container:
            wait_until_healthy(container)
            metrics = get(f"{container.url}/metrics")
            stored = podman("exec", container.name, "find", STATE_DIR, "-type", "f").stdout

    parsed = samples(metrics.text)
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=SIMULATED_POOL) == 1
    assert_exact(parsed, model, SIMULATED_POOL)
    assert len(stored.split()) == 1, stored


def test_image_prints_the_package_version(image: BuiltImage) -> None:
    assert podman("run", "--rm", "--network=none", image.name, "--version").stdout == (
        f"cognito-import-exporter {__version__}\n"
    )


def test_image_holds_exactly_the_locked_dependencies(image: BuiltImage) -> None:
    listed = in_image(
        image,
        "/opt/venv/bin/python",
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    installed = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in json.loads(listed).items()
    }
    markers_for_older_pythons = re.findall(
        r"^(\S+)==\S+ ; python_full_version < '3\.(\d+)'",
        RUNTIME_LOCK.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    not_for_this_python = {
        name for name, minor in markers_for_older_pythons if IMAGE_PYTHON[1] >= int(minor)
    }
    expected = {
        name: pin.version
        for name, pin in pins(RUNTIME_LOCK).items()
        if name not in not_for_this_python
    }
    assert installed == {**expected, "cognito-import-exporter": __version__}


def test_image_has_no_compiler_pip_sources_or_caches(image: BuiltImage) -> None:
    found = in_image(
        image,
        "/bin/sh",
        "-c",
        "for path in /usr/bin/gcc /usr/bin/cc /usr/bin/make /opt/venv/bin/pip /src /root/.cache"
        " /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease; do"
        ' [ -e "$path" ] && echo "$path"; done; '
        "find / -xdev -name tests -path '*cognito*' -print; true",
    )
    assert found == ""


def test_image_size_stays_lean(image: BuiltImage) -> None:
    assert image.size_bytes < MAX_IMAGE_BYTES


def test_image_path_puts_the_virtualenv_before_debians_directories(image: BuiltImage) -> None:
    inspected = podman("image", "inspect", "--format", "{{json .Config.Env}}", image.name)
    env = json.loads(inspected.stdout)
    paths = [entry.removeprefix("PATH=") for entry in env if entry.startswith("PATH=")]
    assert paths == ["/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_podman_asks_for_no_more_files_or_processes_than_the_machine_grants() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    settings = tomllib.loads(CONTAINERS_CONF.read_text(encoding="utf-8"))
    asked = {
        name: [int(n) for n in limits.split(":")]
        for name, _, limits in (u.partition("=") for u in settings["containers"]["default_ulimits"])
    }
    granted = {
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
    }
    assert {name: all(n <= granted[name][0] for n in asked[name]) for name in asked} == {
        "nofile": True,
        "nproc": True,
    }
    assert settings["engine"]["runtime"] == "runc"


def test_image_verifies_aws_endpoints_with_botocores_own_certificates(image: BuiltImage) -> None:
    """The image has no ca-certificates package; botocore brings the CA bundle it verifies
    AWS's certificates with (AWS_CA_BUNDLE names another, behind a TLS-intercepting proxy)."""
    found = in_image(
        image,
        "/opt/venv/bin/python",
        "-c",
        "import os, botocore.httpsession as s; p = s.get_cert_path(True); "
        "print(p, os.path.getsize(p) > 100_000)",
    )
    assert found == "/opt/venv/lib/python3.11/site-packages/botocore/cacert.pem True\n"
