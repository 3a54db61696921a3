"""The exporter as a user runs it: its own process, a config file, a Cognito endpoint over HTTP."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from exporter.demo.service import SimulatedCognito
from tests.exporter_process import running_exporter, samples, value
from tests.prometheus_releases import PrometheusRelease
from tests.simulated import assert_exact, config_yaml, populate, serving

POOL_SIZES = {
    "eu-west-1_Empty0": 0,
    "eu-west-1_Small7": 7,
    "eu-west-1_Pages61": 61,
    "us-east-1_Large260": 260,
}
MISSING_POOL = "eu-west-1_Missing9"


def write_config(path: Path, endpoint: str) -> Path:
    path.write_text(config_yaml(endpoint, [*POOL_SIZES, MISSING_POOL]))
    return path


def test_every_pool_is_exact_and_a_missing_pool_is_isolated(tmp_path: Path) -> None:
    model = SimulatedCognito(seed=3)
    for seed, (pool_id, size) in enumerate(POOL_SIZES.items()):
        populate(model, pool_id, size, seed)
    with serving(model) as endpoint:
        config = write_config(tmp_path / "config.yaml", endpoint)
        with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
            parsed = samples(exporter.scrape())
            log = exporter.log()
    for pool_id in POOL_SIZES:
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=pool_id) == 1
        assert_exact(parsed, model, pool_id)
    assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=MISSING_POOL) == 0
    assert (
        value(
            parsed,
            "cognito_user_import_api_errors_total",
            user_pool_id=MISSING_POOL,
            error_code="ResourceNotFound",
        )
        == 1
    )
    assert not any(
        name == "cognito_user_import_jobs" and ("user_pool_id", MISSING_POOL) in labels
        for name, labels in parsed
    )
    # pages of 50 (what an answer holds): 1 + 1 + 2 + 6 for the four pools, plus one failed
    # call for the missing pool
    assert (
        value(parsed, "cognito_user_import_api_requests_total", operation="ListUserImportJobs")
        == 11
    )
    assert f"user_pool_id={MISSING_POOL} error_code=ResourceNotFound" in log


@pytest.mark.slow
def test_exposition_passes_promtool(prometheus_release: PrometheusRelease, tmp_path: Path) -> None:
    model = SimulatedCognito(seed=4)
    populate(model, "eu-west-1_Small7", 7, 1)
    with serving(model) as endpoint:
        config = write_config(tmp_path / "config.yaml", endpoint)
        with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
            exposition = exporter.scrape()
    assert "PreSignedUrl" not in exposition
    assert "X-Amz-Signature" not in exposition
    checked = subprocess.run(
        [prometheus_release.promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
