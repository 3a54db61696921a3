"""Fixtures many test modules share. A module that needs the simulator over HTTP defines its
own `model` (the pools it wants) and asks for `endpoint`."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from exporter.demo.service import SimulatedCognito
from exporter.logs import configure
from tests.container_image import built_image
from tests.prometheus_releases import MAJOR_VERSIONS, PrometheusRelease, release_of
from tests.prometheus_server import running_demo
from tests.simulated import serving


@pytest.fixture
def log_level() -> str:
    return "info"


@pytest.fixture
def log_stream(log_level: str) -> Iterator[io.StringIO]:
    """The exporter's own log handler and format at `log_level`, into a buffer."""
    stream = io.StringIO()
    configure(log_level, "logfmt", stream)
    yield stream
    configure("warn", "logfmt", io.StringIO())


@pytest.fixture
def endpoint(model: SimulatedCognito) -> Iterator[str]:
    """The module's `model`, served over real HTTP on loopback, for real botocore."""
    with serving(model) as url:
        yield url


@pytest.fixture(scope="module")
def exporter_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of the demo (the exporter and its simulator) running for the module."""
    with running_demo(tmp_path_factory.mktemp("exporter")) as address:
        yield address


@pytest.fixture(scope="module", params=MAJOR_VERSIONS, ids=lambda major: f"prometheus{major}")
def prometheus_release(request: pytest.FixtureRequest) -> PrometheusRelease:
    """Each Prometheus release in turn (2.x and 3.x): its prometheus and promtool binaries."""
    major: int = request.param
    return release_of(major)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The container image's size and build time, when a test built it."""
    if built_image.cache_info().currsize:
        built = built_image()
        terminalreporter.write_line(
            f"image {built.name}: {built.size_bytes / 1e6:.1f} MB, "
            f"built in {built.build_seconds:.1f} s (with the layers podman had cached)"
        )
