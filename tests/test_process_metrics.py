"""The process' own series (CPU, memory, descriptors, start time) on both metric endpoints."""

from __future__ import annotations

import os

import psutil
import pytest

from exporter.demo.service import SimulatedCognito
from tests.exporter_process import samples, value
from tests.simulated import config_yaml, exporter_for
from tests.wsgi import call


@pytest.fixture
def model() -> SimulatedCognito:
    return SimulatedCognito(seed=3)


@pytest.mark.parametrize("path", ["/metrics", "/exporter-metrics"])
def test_the_process_series_describe_this_process(endpoint: str, path: str) -> None:
    runtime, app = exporter_for(config_yaml(endpoint))
    status, _, body = call(app, path)
    assert status == 200
    parsed = samples(body.decode())
    process = psutil.Process()
    assert value(parsed, "process_start_time_seconds") == pytest.approx(
        process.create_time(), abs=1.0
    )
    assert value(parsed, "process_max_fds") == process.rlimit(psutil.RLIMIT_NOFILE)[0]
    assert value(parsed, "process_open_fds") == pytest.approx(
        len(os.listdir("/proc/self/fd")), abs=3
    )
    assert value(parsed, "process_resident_memory_bytes") == pytest.approx(
        process.memory_info().rss, rel=0.2
    )
    runtime.close()
