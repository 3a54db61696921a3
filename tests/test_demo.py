"""The README's first command: the embedded demo, as a newcomer runs it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.exporter_process import running_exporter, samples

USERS = "cognito_user_import_users_total"


def users_by_series(exposition: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (name, labels), value in samples(exposition).items() if name == USERS}


def test_demo_shows_live_jobs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    started = time.monotonic()
    with running_exporter("--demo", workdir=tmp_path) as demo:
        first_scrape = demo.scrape()
        served_after = time.monotonic() - started
        parsed = samples(first_scrape)
        statuses_seen = {
            dict(labels)["status"]
            for (name, labels), value in parsed.items()
            if name == "cognito_user_import_jobs" and value > 0
        }
        pools = {
            dict(labels)["user_pool_id"]
            for (name, labels), value in parsed.items()
            if name == "cognito_user_import_scrape_success" and value == 1
        }
        first_users = users_by_series(first_scrape)
        moved_after = None
        while time.monotonic() - started < served_after + 10:
            time.sleep(0.2)
            if users_by_series(demo.scrape()) != first_users:
                moved_after = time.monotonic() - started - served_after
                break
        demo.process.send_signal(signal.SIGINT)
        exit_code = demo.process.wait(timeout=5)
        banner = demo.log()
    assert served_after < 15
    assert len(pools) == 4
    assert len(statuses_seen) >= 4, statuses_seen
    assert moved_after is not None
    assert moved_after <= 5
    assert exit_code == 0
    assert "/metrics" in banner
    assert "Ctrl-C" in banner
    assert "Traceback" not in banner
