"""The reasons benchmark's quick size runs end to end and meets its verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_bench import run_bench


def test_a_quick_reasons_bench_counts_exactly_within_the_quota(tmp_path: Path) -> None:
    json_path = tmp_path / "reasons.json"
    finished = run_bench(
        "bench.reasons_bench", "--rows", "30000", "--rate", "4", "--json", str(json_path)
    )
    assert "PASS  reasons counted exactly" in finished.stdout
    document = json.loads(json_path.read_text())
    assert all(document["verdicts"].values())
    result = document["result"]
    assert result["rows"] == 30_000
    # about 8,000 rows to a 1 MB page
    assert 3 <= result["pages"] <= 6
    assert result["describe_calls"] == 1
    assert result["list_calls_reasons_on"] == result["list_calls_reasons_off"] == 5
