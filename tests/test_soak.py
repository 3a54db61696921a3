"""A few minutes of scrapes with faults switched on and off: no growth, exact afterwards."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import psutil
import pytest

from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from tests.exporter_process import running_exporter, samples, value
from tests.simulated import assert_exact, config_yaml, populate

pytestmark = pytest.mark.slow

POOLS = tuple(f"eu-west-1_Soak{index}" for index in range(6))
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "150"))
FAULT_PHASE_SECONDS = 10.0


def switch_faults(model: SimulatedCognito, phase: int) -> None:
    model.faults.clear()
    if phase % 5 == 1:
        model.faults.throttle_rate = 0.3
    elif phase % 5 == 2:
        model.faults.garbage_pools.add(POOLS[1])
        model.faults.failing_pools[POOLS[2]] = "InternalErrorException"
    elif phase % 5 == 3:
        model.faults.latency = 0.4
    elif phase % 5 == 4:
        model.faults.garbage_mode = "repeat_token"
        model.faults.garbage_pools.add(POOLS[3])


def resources(process: psutil.Process) -> tuple[int, int, int]:
    return process.num_threads(), process.num_fds(), process.memory_info().rss


def test_soak_with_faults_shows_no_growth_and_ends_exact(tmp_path: Path) -> None:
    model = SimulatedCognito(seed=41)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, 90, seed, active_newest=2)
    server = SimulatorServer(model)
    endpoint = server.start()
    config = tmp_path / "config.yaml"
    config.write_text(
        config_yaml(
            endpoint, POOLS, scrape={"timeout": "3s", "full_resync_interval": "20s"}, page_size=20
        )
    )
    try:
        with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
            process = psutil.Process(exporter.process.pid)
            for _ in range(5):
                exporter.scrape()
            baseline = resources(process)
            scrapes = 0
            started = time.monotonic()
            for phase in itertools.count():
                if time.monotonic() - started >= SOAK_SECONDS:
                    break
                switch_faults(model, phase)
                phase_end = time.monotonic() + FAULT_PHASE_SECONDS
                while time.monotonic() < phase_end:
                    exporter.scrape({"X-Prometheus-Scrape-Timeout-Seconds": "3"})
                    scrapes += 1
            model.faults.clear()
            # what timed out during the faults may still be finishing: let two scrapes settle
            exporter.scrape()
            parsed = samples(exporter.scrape())
            threads, fds, rss = resources(process)
    finally:
        server.stop()
    assert scrapes > SOAK_SECONDS / 4
    assert threads <= baseline[0] + 4, (baseline, threads)
    assert fds <= baseline[1] + 10, (baseline, fds)
    assert rss <= baseline[2] + 30 * 2**20, (baseline, rss)
    for pool_id in POOLS:
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
        assert_exact(parsed, model, pool_id)
