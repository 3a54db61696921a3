"""Pool histories kept across restarts (`--storage.path`): the first scrape after a restart
costs one call a pool and is exact, counters go on, and whatever a stored file holds (cut
short, corrupt, another pool's, another format, not a file) is ignored with one log line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.app import Runtime
from exporter.collect.storage import HistoryStore
from exporter.config.load import load_text
from exporter.demo.service import SimulatedCognito
from exporter.web.routes import ExporterApp
from tests.exporter_process import Samples, samples, value
from tests.simulated import NOW, TEST_ACCOUNT, assert_exact, config_yaml, populate
from tests.wsgi import call

POOLS = tuple(f"eu-west-1_Kept{index}" for index in range(4))


@pytest.fixture
def model(request: pytest.FixtureRequest) -> SimulatedCognito:
    """Full pools by default (1,000 jobs: 20 pages of 50, then the empty page after the
    trailing token); `indirect` parametrization gives another job count."""
    jobs = getattr(request, "param", 1000)
    model = SimulatedCognito(seed=17)
    for seed, pool_id in enumerate(POOLS):
        populate(model, pool_id, jobs, seed, active_newest=2)
    model.faults.trailing_token = True
    return model


def started(endpoint: str, folder: Path) -> tuple[Runtime, ExporterApp]:
    config = load_text(config_yaml(endpoint, POOLS, scrape={"timeout": "60s"}))
    runtime = Runtime(lambda: config, storage_path=str(folder))
    runtime.apply(config)
    return runtime, ExporterApp(runtime)


def scrape(app: ExporterApp) -> Samples:
    status, _, body = call(app, "/metrics")
    assert status == 200
    return samples(body.decode())


def test_a_restart_costs_one_call_a_pool_and_counters_go_on(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    runtime, app = started(endpoint, tmp_path)
    scrape(app)
    # 1,000 jobs at 50 a page, and the empty page after the trailing token
    assert model.calls["ListUserImportJobs"] == len(POOLS) * 21
    runtime.close()
    model.add_job(POOLS[0], name="while down", status="Succeeded", created=NOW, imported=7)

    model.reset_calls()
    runtime, app = started(endpoint, tmp_path)
    parsed = scrape(app)
    assert model.calls["ListUserImportJobs"] == len(POOLS)
    assert "DescribeUserImportJob" not in model.calls
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)
    runtime.close()


def test_full_reads_overdue_after_a_restart_are_spread_not_all_due_at_once(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    runtime, app = started(endpoint, tmp_path)
    scrape(app)
    runtime.close()
    for path in tmp_path.glob("*.json"):
        document = json.loads(path.read_text())
        document["next_full_scan"] = 0.0  # due long ago
        path.write_text(json.dumps(document))
    model.reset_calls()
    runtime, app = started(endpoint, tmp_path)
    parsed = scrape(app)
    assert model.calls["ListUserImportJobs"] == len(POOLS)
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)
    runtime.close()


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:200]), "unexpected end of data"),
        (lambda path: path.write_bytes(b"\xff\xfe not json"), "not valid UTF-8"),
        (lambda path: path.write_text("[]"), "not a stored pool history"),
        (lambda path: _edit(path, format=0), "written in another format"),
        (
            lambda path: _edit(path, pool={**_pool_of(path), "account": "999999999999"}),
            "written for another pool, region, endpoint or account",
        ),
        (lambda path: _edit(path, users_total={"imported": -5}), "users_total.imported: Input"),
        (lambda path: _edit(path, head=[{"JobId": "x"}]), "has no valid Status"),
        (lambda path: _edit(path, next_full_scan=True), "next_full_scan: Input should be"),
        (lambda path: _replace_with_fifo(path), "not a regular file"),
        (lambda path: _edit(path, boundary=None), "a tail of jobs without its boundary job"),
        (
            lambda path: _edit(path, users_total={"imported": 5, "skipped": 0, "failed": 0}),
            "users_total imported is below what its jobs count",
        ),
    ],
    ids=[
        "cut short",
        "not JSON",
        "not an object",
        "old format",
        "another account",
        "negative count",
        "bad job",
        "a flag for a time",
        "fifo",
        "tail without boundary",
        "total below its jobs",
    ],
)
@pytest.mark.parametrize("model", [120], indirect=True)
def test_a_spoiled_file_is_ignored_with_one_line_and_the_pool_read_in_full(
    model: SimulatedCognito,
    endpoint: str,
    tmp_path: Path,
    log_stream: io.StringIO,
    spoil: object,
    reason: str,
) -> None:
    runtime, app = started(endpoint, tmp_path)
    scrape(app)
    runtime.close()
    spoiled = tmp_path / f"{POOLS[0]}.json"
    spoil(spoiled)  # type: ignore[operator]
    model.reset_calls()
    runtime, app = started(endpoint, tmp_path)
    parsed = scrape(app)
    for pool_id in POOLS:
        assert_exact(parsed, model, pool_id)
    # the spoiled pool read in full (3 pages and the empty one), the others one call each
    assert model.pool_call_counts() == {POOLS[0]: 4, **dict.fromkeys(POOLS[1:], 1)}
    lines = [line for line in log_stream.getvalue().splitlines() if "history ignored" in line]
    assert len(lines) == 1
    assert POOLS[0] in lines[0]
    assert reason in lines[0]
    runtime.close()


@pytest.mark.parametrize("model", [120], indirect=True)
def test_a_write_that_fails_is_said_once_and_collection_goes_on(
    model: SimulatedCognito, endpoint: str, tmp_path: Path, log_stream: io.StringIO
) -> None:
    (tmp_path / f"{POOLS[0]}.json").mkdir()  # where the file would go
    runtime, app = started(endpoint, tmp_path)
    for _ in range(3):
        model.add_job(POOLS[0], name="new", status="InProgress", created=NOW + 1)
        parsed = scrape(app)
        assert_exact(parsed, model, POOLS[0])
        assert value(parsed, "cognito_user_import_scrape_success", user_pool_id=POOLS[0]) == 1
    assert log_stream.getvalue().count("cannot write pool histories") == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{pool_id}.json" for pool_id in POOLS
    )
    runtime.close()


@pytest.mark.parametrize("model", [120], indirect=True)
def test_an_unchanged_history_is_not_written_again(
    model: SimulatedCognito, endpoint: str, tmp_path: Path
) -> None:
    runtime, app = started(endpoint, tmp_path)
    scrape(app)
    written = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    os.utime(tmp_path / f"{POOLS[1]}.json", ns=(1, 1))
    scrape(app)
    assert (tmp_path / f"{POOLS[1]}.json").stat().st_mtime_ns == 1
    assert {path.name for path in tmp_path.iterdir()} == set(written)
    assert all(oct(path.stat().st_mode)[-3:] == "600" for path in tmp_path.iterdir())
    runtime.close()


def test_a_storage_path_that_cannot_be_written_ends_the_start_with_one_line(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml("http://127.0.0.1:9", POOLS[:1]))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "--config.file",
            str(config),
            "--storage.path",
            str(not_a_folder / "histories"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"--storage.path {not_a_folder / 'histories'}: cannot write there (Not a directory)"
    ]


def _read(path: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads(path.read_text())
    return document


def _pool_of(path: Path) -> dict[str, object]:
    pool = _read(path)["pool"]
    assert isinstance(pool, dict)
    return pool


def _edit(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**_read(path), **changes}))


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_an_account_that_cannot_be_told_at_a_restart_spoils_no_stored_history(
    model: SimulatedCognito, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STS down at one restart: the files are still taken (the pool, region and endpoint
    match), written back for the account they were written for, and taken at the next."""
    model.accounts = {"AKIAEXAMPLE": "210987654321"}
    text = config_yaml(endpoint, POOLS, scrape={"timeout": "60s"}).replace(
        f', account_id: "{TEST_ACCOUNT}"', ""
    )
    calls = []
    for sts in (endpoint, "http://127.0.0.1:9", endpoint):
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts)
        config = load_text(text)
        runtime = Runtime(lambda config=config: config, storage_path=str(tmp_path))  # type: ignore[misc]
        runtime.apply(config)
        model.reset_calls()
        parsed = scrape(ExporterApp(runtime))
        calls.append(model.calls["ListUserImportJobs"])
        for pool_id in POOLS:
            assert_exact(parsed, model, pool_id)
        runtime.close()
        accounts = {_pool_of(path)["account"] for path in tmp_path.glob("*.json")}
        assert accounts == {"210987654321"}
    # a full read of 21 pages a pool, then one call a pool at each restart, STS down or not
    assert calls == [21 * len(POOLS), len(POOLS), len(POOLS)]


def _owner(_: object) -> None:
    return None


def test_a_link_planted_where_the_probe_writes_is_never_written_through(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "histories"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    # every name a probe of this process could take, as a pid-1 container would have it
    for name in (f".probe-{os.getpid()}", ".probe-1", ".probe"):
        (folder / name).symlink_to(victim)
    HistoryStore.open(str(folder), _owner)
    assert victim.read_bytes() == b"precious"
    assert sorted(path.name for path in folder.iterdir()) == [
        ".probe",
        ".probe-1",
        f".probe-{os.getpid()}",
    ]


def test_temporary_files_left_by_a_killed_writer_are_removed_at_start(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    folder = tmp_path / "histories"
    folder.mkdir(mode=0o700)
    hour_ago = time.time() - 3600
    leftovers = [
        folder / f".eu-west-1_Kept{index}.json.{index}.140{index}.tmp" for index in range(3)
    ]
    for leftover in leftovers:
        leftover.write_bytes(b"{")
        os.utime(leftover, (hour_ago, hour_ago))
    in_flight = folder / ".eu-west-1_Kept9.json.77.1401.tmp"  # another exporter writing now
    in_flight.write_bytes(b"{")
    kept = folder / "eu-west-1_Kept0.json"
    kept.write_bytes(b"{}")
    os.utime(kept, (hour_ago, hour_ago))
    HistoryStore.open(str(folder), _owner)
    assert sorted(path.name for path in folder.iterdir()) == [in_flight.name, kept.name]
    assert log_stream.getvalue().count("temporary files left by an interrupted write") == 1


def test_a_folder_writable_by_others_is_warned_about_once(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    HistoryStore.open(str(shared), _owner)
    private = tmp_path / "private"
    HistoryStore.open(str(private), _owner)
    assert private.stat().st_mode & 0o777 == 0o700
    lines = [line for line in log_stream.getvalue().splitlines() if "writable by other" in line]
    assert len(lines) == 1
    assert f"folder={shared}" in lines[0]
