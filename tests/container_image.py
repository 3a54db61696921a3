"""The repository's Dockerfile built with podman, for the tests that run the image.

No image registry need be reachable: the Dockerfile's base, debian:bookworm-slim, is imported
from the root filesystem that scripts/install/50-podman.sh makes with mmdebstrap (as Debian
makes the official image) into .cache/images/. Podman runs with the project's containers.conf
(tests/podman/containers.conf), passed in CONTAINERS_CONF; nothing system-wide changes.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__
from tests.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
CONTAINERS_CONF = REPO / "tests" / "podman" / "containers.conf"
BASE_ROOTFS = REPO / ".cache" / "images" / "debian-bookworm-slim.tar"
# The image ID podman gave the imported root filesystem and the settings it was imported with,
# so a remade root filesystem or new settings are imported again.
BASE_IMPORTED_ID = BASE_ROOTFS.with_suffix(".id")
# What Debian's official image sets; an imported root filesystem has no environment.
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE = f"localhost/cognito-import-exporter:{__version__}"
# The host's trust store, which holds the CA of a TLS-intercepting proxy where there is one.
HOST_CERTS = Path("/etc/ssl/certs")
BUILD_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class BuiltImage:
    name: str
    size_bytes: int
    build_seconds: float


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A podman command that must succeed; its output."""
    result = subprocess.run(
        [require_tool("podman"), *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def base_image_name() -> str:
    """The image the Dockerfile's first stage starts from."""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            return words[1]
    raise AssertionError("the Dockerfile has no FROM")


def require_base_rootfs() -> Path:
    if BASE_ROOTFS.is_file():
        return BASE_ROOTFS
    reason = f"{BASE_ROOTFS} is missing: scripts/install/50-podman.sh makes it"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def imported_base() -> str:
    """The base image, imported from the cached root filesystem unless already there."""
    rootfs = require_base_rootfs()
    name = base_image_name()
    recorded = BASE_IMPORTED_ID.read_text().split() if BASE_IMPORTED_ID.exists() else []
    present = subprocess.run(
        [require_tool("podman"), "image", "inspect", "--format", "{{.Id}}", name],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    made = rootfs.stat()
    rootfs_version = f"{made.st_size}:{made.st_mtime_ns}"
    if present.returncode == 0 and recorded == [present.stdout.strip(), BASE_PATH, rootfs_version]:
        return name
    imported = podman(
        "import",
        "--quiet",
        *("--change", f"ENV PATH={BASE_PATH}"),
        *("--change", 'CMD ["bash"]'),
        str(rootfs),
        name,
    )
    image_id = imported.stdout.strip().removeprefix("sha256:")
    BASE_IMPORTED_ID.write_text(f"{image_id} {BASE_PATH} {rootfs_version}\n")
    return name


@functools.cache
def built_image() -> BuiltImage:
    """The repository's Dockerfile, built unchanged (once per test session)."""
    require_tool("podman")
    imported_base()
    started = time.monotonic()
    podman(
        "build",
        "--quiet",
        "--pull=never",
        f"--volume={HOST_CERTS}:/etc/ssl/host-certs:ro",
        "--build-arg=PIP_CERT=/etc/ssl/host-certs/ca-certificates.crt",
        f"--build-arg=VERSION={__version__}",
        f"--tag={IMAGE}",
        str(REPO),
        timeout=BUILD_TIMEOUT_SECONDS,
    )
    build_seconds = time.monotonic() - started
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    return BuiltImage(IMAGE, size, build_seconds)
