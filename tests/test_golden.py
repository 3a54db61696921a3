"""The whole `/metrics` answer of a running exporter, compared exactly with a golden file:
every family, the exporter's own included, with durations and timestamps of the moment
masked. `UPDATE_GOLDEN=1` rewrites the file, on purpose only."""

from __future__ import annotations

import os
import re
from pathlib import Path

from exporter.demo.service import SimulatedCognito
from tests.exporter_process import running_exporter
from tests.simulated import NOW, config_yaml, populate, serving

GOLDEN = Path(__file__).parent / "testdata" / "metrics.prom"
# values that depend on the moment the test runs, not on what the exporter was asked
_MOMENTARY = re.compile(
    r"^(cognito_user_import_scrape_duration_seconds"
    r"|cognito_user_import_config_last_reload_success_timestamp_seconds"
    r"|cognito_user_import_scrape_last_success_timestamp_seconds"
    r"|process_[a-z_]+)(\{[^}]*\})? .*$",
    re.MULTILINE,
)


PROCESS_SERIES = {
    "process_cpu_seconds_total",
    "process_max_fds",
    "process_open_fds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
}


def masked(exposition: str) -> str:
    return _MOMENTARY.sub(
        lambda match: f"{match.group(1)}{match.group(2) or ''} <masked>", exposition
    )


def test_the_whole_metrics_answer_matches_the_golden_file(tmp_path: Path) -> None:
    model = SimulatedCognito(seed=5, clock=lambda: NOW)
    populate(model, "eu-west-1_Golden1", 12, seed=1, active_newest=2)
    model.add_pool("eu-west-1_Empty2", "empty", spawning=False)
    with serving(model) as endpoint:
        config = tmp_path / "config.yaml"
        config.write_text(
            config_yaml(endpoint, scrape={"max_jobs_per_pool": 4, "requests_per_second": "auto"})
            + "pools:\n"
            "  - {id: eu-west-1_Golden1, name: golden, labels: {team: identity, tier: gold}}\n"
            "  - {id: eu-west-1_Empty2}\n"
            "  - {id: eu-west-1_Gone3, name: gone}\n"
        )
        with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
            exposition = masked(exporter.scrape())
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(exposition)
    assert exposition == GOLDEN.read_text()
    # the momentary series above (three durations, two pools' last success, the reload's
    # time), and the process' CPU, memory, descriptors and start
    assert exposition.count("<masked>") == 6 + len(PROCESS_SERIES)
    assert set(re.findall(r"^(process_[a-z_]+) ", exposition, re.MULTILINE)) >= PROCESS_SERIES
