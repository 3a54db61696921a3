"""The landing page as a person sees it: the problems chosen from known inputs, the console
links, and the page rendered by real headless Chromium."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from exporter.cognito.jobs import Job
from exporter.collect.history import ScanOutcome
from exporter.collect.scraper import Snapshot
from exporter.collect.served import PoolResult
from exporter.config.load import load_text
from exporter.config.model import Pool
from exporter.demo.service import SimulatedCognito
from exporter.web.console import import_jobs_url, pool_url
from exporter.web.statuspage import (
    ACTIVE_TOO_LONG,
    CLOSE_TO_EXPIRY,
    COLLECTION_FAILING,
    JOB_FAILED,
    USERS_FAILED,
    USERS_SKIPPED,
    Problem,
    landing_page,
    problems,
)
from tests.exporter_process import running_exporter
from tests.simulated import TEST_CREDENTIALS, serving
from tests.tools import require_tool

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "build" / "screenshots" / "status-page-problems.png"
NOW = 1_790_000_000.0
HOUR = 3600.0

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]  # fmt: skip

BUSY_POOL = "eu-west-1_Busy0001"
BROKEN_POOL = "us-east-1_Br0ken01"
CALM_POOL = "ap-southeast-2_Calm01"
BUSY_JOBS = (
    "https://eu-west-1.console.aws.amazon.com/cognito/v2/idp/user-pools/eu-west-1_Busy0001/users"
    "?region=eu-west-1"
)
BROKEN_OVERVIEW = (
    "https://us-east-1.console.aws.amazon.com/cognito/v2/idp/user-pools/us-east-1_Br0ken01"
    "?region=us-east-1"
)


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def configured_pools() -> tuple[Pool, ...]:
    return load_text(
        f"""
        defaults: {{credentials: t}}
        credentials: {{t: {{access_key_id: AKIAEXAMPLE, secret_access_key: not-real}}}}
        pools:
          - {{id: {BUSY_POOL}, name: "<b>busy</b>"}}
          - {{id: {BROKEN_POOL}, name: broken}}
          - {{id: {CALM_POOL}, name: calm}}
        """
    ).pools


def ago(hours: float | None) -> float | None:
    return None if hours is None else NOW - hours * HOUR


def job(
    job_id: str,
    status: str,
    created: float,
    started: float | None = None,
    completed: float | None = None,
    users: tuple[int, int, int] = (0, 0, 0),
    message: str | None = None,
) -> Job:
    """A job whose times are given in hours before NOW."""
    when = (NOW - created * HOUR, ago(started), ago(completed))
    return Job(job_id, f"name of {job_id}", status, *when, *users, message)


def collected(pool: Pool, recent: tuple[Job, ...], older: tuple[Job, ...] = ()) -> PoolResult:
    """A successful result: `recent` as the collection chose them, `older` only in the
    pool's history (beyond max_jobs_per_pool)."""
    outcome = ScanOutcome({}, {}, recent + older, 1, 0, False, (), False)
    return PoolResult(pool, 0.1, outcome=outcome, recent_jobs=recent)


def failed(pool: Pool, code: str, message: str) -> PoolResult:
    return PoolResult(pool, 0.1, error_code=code, error_message=message)


def busy_jobs() -> tuple[Job, ...]:
    """Newest first: jobs that are problems and jobs that are not, at the thresholds."""
    invalid = "The CSV file has an invalid header <b>x</b>."
    return (
        job("import-ok", "Succeeded", 1, 1, 0.5, (5, 0, 0)),
        job("import-failed", "Failed", 2, 2, 1.5, (120, 0, 0), invalid),
        job("import-partial", "Succeeded", 3, 3, 2, (900, 40, 3)),
        job("import-stopped", "Stopped", 4, 4, 3, (10, 0, 2)),
        job("import-running", "InProgress", 6, 6, users=(1, 1, 0)),
        job("import-stuck", "InProgress", 8, 7.5 + 1 / 60),
        job("import-stopping", "Stopping", 9, 6 + 1 / HOUR),
        job("import-pending", "Pending", 10 + 2 / 60),
        job("import-fresh", "Created", 20),
        job("import-waiting", "Created", 21.5),
        job("import-new-status", "Paused", 30),
    )


def test_problems_come_worst_first_with_their_figures_and_console_links() -> None:
    busy, broken, calm = configured_pools()
    denied = "not authorized to perform ListUserImportJobs"
    snapshot = Snapshot(
        (
            collected(busy, busy_jobs()),
            failed(broken, "AccessDenied", denied),
            collected(calm, (job("import-calm", "Succeeded", 1, 1, 1, (3, 0, 0)),)),
        ),
        complete=True,
    )
    found = problems((busy, broken, calm), snapshot, NOW)

    def row(job_id: str, kind: str, detail: str) -> Problem:
        return Problem(
            BUSY_POOL, "<b>busy</b>", job_id, f"name of {job_id}", kind, detail, BUSY_JOBS
        )

    failing = f"AccessDenied: {denied} (nothing read yet)"
    assert found == [
        Problem(BROKEN_POOL, "broken", None, None, COLLECTION_FAILING, failing, BROKEN_OVERVIEW),
        row("import-failed", JOB_FAILED, "Failed: 120 imported, 0 skipped, 0 failed. "
            "The CSV file has an invalid header <b>x</b>."),
        row("import-partial", USERS_FAILED, "Succeeded: 900 imported, 40 skipped, 3 failed"),
        row("import-stopped", USERS_FAILED, "Stopped: 10 imported, 0 skipped, 2 failed"),
        row("import-stuck", ACTIVE_TOO_LONG, "InProgress for 7 h 31 min, since its start"),
        row("import-stopping", ACTIVE_TOO_LONG, "Stopping for 6 h 0 min, since its start"),
        row("import-pending", ACTIVE_TOO_LONG, "Pending for 10 h 2 min, since its creation"),
        row("import-waiting", CLOSE_TO_EXPIRY, "not started 21 h 30 min after its creation; "
            "Cognito expires it 24-48 h after creation"),
        # skipped users only: last, so that they never bury a failure
        row("import-running", USERS_SKIPPED, "InProgress: 1 imported, 1 skipped, 0 failed"),
    ]  # fmt: skip


def test_an_active_job_beyond_the_recent_ones_is_still_a_problem() -> None:
    busy, _, _ = configured_pools()
    recent = tuple(
        job(f"import-{index}", "Succeeded", index, users=(1, 0, 0)) for index in range(3)
    )
    waiting = job("import-old", "Created", 22)
    found = problems((busy,), Snapshot((collected(busy, recent, (waiting,)),), True), NOW)
    assert [(problem.job_id, problem.kind) for problem in found] == [
        ("import-old", CLOSE_TO_EXPIRY)
    ]


def test_only_configured_pools_with_a_result_count() -> None:
    busy, broken, calm = configured_pools()
    # the snapshot predates a reload that removed `broken`; `calm` is not collected yet
    snapshot = Snapshot((failed(broken, "Timeout", "not collected"), collected(busy, ())), True)
    assert problems((busy, calm), snapshot, NOW) == []
    assert problems((busy, calm), None, NOW) == []


def test_console_urls() -> None:
    assert pool_url(BUSY_POOL, "eu-west-1") == (
        "https://eu-west-1.console.aws.amazon.com/cognito/v2/idp/user-pools/eu-west-1_Busy0001"
        "?region=eu-west-1"
    )
    assert import_jobs_url(BUSY_POOL, "eu-west-1") == BUSY_JOBS
    assert import_jobs_url("cn-north-1_Ch1na001", "cn-north-1") == (
        "https://cn-north-1.console.amazonaws.cn/cognito/v2/idp/user-pools/cn-north-1_Ch1na001"
        "/users?region=cn-north-1"
    )
    # AWS GovCloud (US) has a console of its own, the region in the query only
    assert pool_url("us-gov-west-1_G0v00001", "us-gov-west-1") == (
        "https://console.amazonaws-us-gov.com/cognito/v2/idp/user-pools/us-gov-west-1_G0v00001"
        "?region=us-gov-west-1"
    )
    assert pool_url(BUSY_POOL, "") is None
    assert import_jobs_url("eu-west-1_x/../../evil", "eu-west-1") is None


def test_a_job_whose_start_lies_ahead_is_aged_from_its_creation() -> None:
    busy, _, _ = configured_pools()
    skewed = job("import-skewed", "Pending", 30, started=-1)  # started "in an hour"
    found = problems((busy,), Snapshot((collected(busy, (skewed,)),), True), NOW)
    assert [(problem.job_id, problem.kind, problem.detail) for problem in found] == [
        ("import-skewed", ACTIVE_TOO_LONG, "Pending for 30 h 0 min, since its creation")
    ]


def test_names_with_bidi_and_invisible_characters_are_shown_escaped() -> None:
    busy, _, _ = configured_pools()
    evil = replace(busy, name="evil\u202egnp.exe\u200b")
    page = landing_page((evil,), Snapshot((failed(evil, "AccessDenied", "no"),), True), NOW)
    text = page.decode()
    assert "\u202e" not in text
    assert "\u200b" not in text
    assert "evil\\u202egnp.exe\\u200b" in text


def test_the_page_escapes_untrusted_text_and_redacts_completion_messages() -> None:
    busy, broken, calm = configured_pools()
    signed = "https://bucket.s3.amazonaws.com/f.csv?X-Amz-Signature=0123abcd&X-Amz-Date=1"
    hostile = job("import-<i>x</i>", "Failed", 1, 1, 0.5, message=f"<script>1</script> {signed}")
    snapshot = Snapshot(
        (collected(busy, (hostile,)), failed(broken, "ResourceNotFound", "gone <now>")), True
    )
    page = landing_page((busy, broken, calm), snapshot, NOW).decode()
    assert "<script>" not in page
    assert "<b>busy</b>" not in page
    assert "0123abcd" not in page
    problem_rows = re.findall(r"<tr class='problem'>.*?</tr>", page)
    assert problem_rows == [
        "<tr class='problem'><td>broken<br><small>us-east-1_Br0ken01</small></td><td></td>"
        "<td class='fail'>collection failing</td><td>ResourceNotFound: gone &lt;now&gt; (nothing "
        "read yet)</td>"
        f"<td class='console'><a href='{BROKEN_OVERVIEW}'>pool in console</a></td></tr>",
        "<tr class='problem'><td>&lt;b&gt;busy&lt;/b&gt;<br><small>eu-west-1_Busy0001</small>"
        "</td><td>name of import-&lt;i&gt;x&lt;/i&gt;<br><small>import-&lt;i&gt;x&lt;/i&gt;"
        "</small></td><td class='fail'>job failed</td><td>Failed: 0 imported, 0 skipped, "
        "0 failed. &lt;script&gt;1&lt;/script&gt; "
        "https://bucket.s3.amazonaws.com/f.csv?X-Amz-Signature=&lt;redacted&gt;&amp;X-Amz-Date=1"
        f"</td><td class='console'><a href='{BUSY_JOBS}'>import jobs in console</a></td></tr>",
    ]
    # the problems come before the per-pool content
    assert page.index("<h2>Problems</h2>") < page.index("<h2>User pools</h2>")


def test_no_problems_is_said_in_one_line() -> None:
    busy, _, calm = configured_pools()
    snapshot = Snapshot((collected(busy, ()), collected(calm, ())), True)
    page = landing_page((busy, calm), snapshot, NOW).decode()
    assert "<p id='no-problems' class='ok'>No problems.</p>" in page
    assert "<table id='problems'>" not in page
    before = landing_page((busy, calm), None, NOW).decode()
    assert "<p id='no-problems'>Nothing collected yet.</p>" in before


def pool_rows(page: str) -> dict[str, list[str]]:
    """pool id -> the cells of its row in the pools table after the id, name and region: last
    collection, error, data age, jobs (as HTML)."""
    (table,) = re.findall(r"<table id='pools'>.*?</table>", page)
    rows = re.findall(r"<tr><td><a href='[^']*'>([^<]+)</a></td>(.*?)</tr>", table)
    return {pool_id: re.findall(r"<td[^>]*>(.*?)</td>", cells)[2:] for pool_id, cells in rows}


def refreshed(result: PoolResult, seconds_ago: float) -> PoolResult:
    return replace(result, refreshed_at=NOW - seconds_ago)


def test_each_pool_shows_how_old_its_values_are() -> None:
    busy, broken, calm = configured_pools()
    never = replace(calm, id="eu-west-1_Never001", name="never")
    unread = replace(calm, id="eu-west-1_Unread01", name="unread")
    running = job("import-running", "InProgress", 1, 1)
    # `broken` failed after a good collection an hour ago: it keeps that collection's values
    good = collected(broken, (running,))
    assert good.outcome is not None
    good = replace(good, outcome=replace(good.outcome, statuses={"InProgress": 1, "Failed": 0}))
    kept = refreshed(good, 3_725)
    snapshot = Snapshot(
        (
            refreshed(collected(busy, ()), 125),
            replace(kept, error_code="Timeout", error_message="no slot <before> the deadline"),
            refreshed(collected(calm, ()), 3 * 86_400 + 5 * HOUR + 59),
            failed(never, "AccessDenied", "denied"),
            PoolResult(unread, 0.0),  # not refreshed yet: its turn has not come
        ),
        True,
    )
    page = landing_page((busy, broken, calm, never, unread), snapshot, NOW).decode()

    assert "<th>Last collection</th><th>Error</th><th>Data age</th><th>Jobs</th>" in page
    assert pool_rows(page) == {
        BUSY_POOL: ["ok in 0.10s", "", "2 min 5 s", "none"],
        BROKEN_POOL: [
            "failed",
            "Timeout: no slot &lt;before&gt; the deadline",
            "1 h 2 min",
            "1 InProgress",
        ],
        CALM_POOL: ["ok in 0.10s", "", "3 d 5 h", "none"],
        "eu-west-1_Never001": ["failed", "AccessDenied: denied", "nothing read yet", ""],
        "eu-west-1_Unread01": ["not read yet", "", "", ""],
    }
    # the failing pools are problems, each saying what it still shows; the unread one is not
    failing = [
        (problem.pool_id, problem.detail)
        for problem in problems((busy, broken, calm, never, unread), snapshot, NOW)
        if problem.kind == COLLECTION_FAILING
    ]
    assert failing == [
        (BROKEN_POOL, "Timeout: no slot <before> the deadline (values shown are 1 h 2 min old)"),
        ("eu-west-1_Never001", "AccessDenied: denied (nothing read yet)"),
    ]
    # the failing pool's job is still among the recent ones
    assert "name of import-running" in page


@pytest.mark.parametrize(
    ("seconds_ago", "shown"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min 0 s"),
        (3_599, "59 min 59 s"),
        (47 * HOUR + 59 * 60, "47 h 59 min"),
        (48 * HOUR, "2 d 0 h"),
        # a refresh stamped ahead of the page's clock (the clock was set back)
        (-30, "0 s"),
    ],
)
def test_data_ages_read_in_the_largest_units_that_fit(seconds_ago: float, shown: str) -> None:
    busy, _, _ = configured_pools()
    result = refreshed(collected(busy, ()), seconds_ago)
    page = landing_page((busy,), Snapshot((result,), True), NOW).decode()
    assert pool_rows(page)[BUSY_POOL][2] == shown


class ProblemRows(HTMLParser):
    """The rows of a rendered page's problems table: each cell's text (line breaks as `|`)
    and the row's link."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[list[str], str | None]] = []
        self._inside = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._inside = found.get("id") == "problems"
        elif self._inside and tag == "tr" and found.get("class") == "problem":
            self.rows.append(([], None))
        elif self._inside and self.rows and tag == "td":
            self._cell = []
        elif self._cell is not None and tag == "br":
            self._cell.append("|")
        elif self._cell is not None and tag == "a":
            self.rows[-1] = (self.rows[-1][0], found.get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1][0].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


# name, status, hours before now when created, started and completed; users imported, skipped
# and failed; completion message
SIMULATED_JOBS: tuple[tuple[str, str, float, float | None, float | None, int, int, int, str], ...]
SIMULATED_JOBS = (
    ("nightly-ok", "Succeeded", 1, 1, 0.5, 50, 0, 0, ""),
    ("nightly-<img src=x onerror=alert(1)>", "Failed", 2, 2, 1.5, 120, 0, 0,
     "<script>alert(2)</script>The CSV file is invalid."),
    ("nightly-partial", "Succeeded", 3, 3, 2, 900, 40, 3, ""),
    ("nightly-stuck", "InProgress", 8, 7.5, None, 0, 0, 0, ""),
    ("nightly-waiting", "Created", 21.5, None, None, 0, 0, 0, ""),
)  # fmt: skip


def simulated_problems(model: SimulatedCognito, now: float) -> list[str]:
    """A pool with a failed job, a job with skipped and failed users, a stuck job, a job about
    to expire and a good one; another pool with nothing wrong. Returns the first pool's job ids."""
    model.add_pool(BUSY_POOL, "busy", spawning=False)
    model.add_pool(CALM_POOL, "calm", spawning=False)
    model.add_job(CALM_POOL, name="calm-ok", status="Succeeded", created=now - 60, completed=now)

    def before(hours: float | None) -> float | None:
        return None if hours is None else now - hours * HOUR

    return [
        model.add_job(
            BUSY_POOL, name=name, status=status, created=now - created * HOUR,
            started=before(started), completed=before(completed), imported=imported,
            skipped=skipped, failed=failed, completion_message=message or None,
        )
        for name, status, created, started, completed, imported, skipped, failed, message
        in SIMULATED_JOBS
    ]  # fmt: skip


@pytest.mark.slow
def test_chromium_shows_the_problems_first_with_their_console_links(tmp_path: Path) -> None:
    binary = require_tool("chromium")
    model = SimulatedCognito(seed=13)
    _, failed_id, partial_id, stuck_id, waiting_id = simulated_problems(model, time.time())
    with serving(model) as endpoint:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"defaults: {{endpoint_url: {endpoint}, credentials: test}}\n"
            f"credentials:\n  {TEST_CREDENTIALS}\n"
            "scrape: {requests_per_second: 10}\n"
            f"pools:\n  - {{id: {BUSY_POOL}, name: '<i>busy</i> & co'}}\n"
            f"  - {{id: {BROKEN_POOL}, name: gone}}\n  - {{id: {CALM_POOL}, name: calm}}\n"
        )
        with running_exporter("--config.file", str(config), workdir=tmp_path) as exporter:
            exporter.scrape()
            url = f"{exporter.base_url}/"
            dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            SCREENSHOT.unlink(missing_ok=True)
            chromium(
                binary,
                tmp_path / "profile-shot",
                f"--screenshot={SCREENSHOT}",
                "--window-size=1280,720",
                url,
            )
    parser = ProblemRows()
    parser.feed(dom)
    busy = "<i>busy</i> & co|eu-west-1_Busy0001"
    gone = "ResourceNotFound: An error occurred (ResourceNotFoundException) when calling the "
    gone += "ListUserImportJobs operation: User pool us-east-1_Br0ken01 does not exist. "
    gone += "(nothing read yet)"
    jobs = "import jobs in console"
    assert parser.rows == [
        (["gone|us-east-1_Br0ken01", "", "collection failing", gone, "pool in console"],
         BROKEN_OVERVIEW),
        ([busy, f"nightly-<img src=x onerror=alert(1)>|{failed_id}", "job failed",
          "Failed: 120 imported, 0 skipped, 0 failed. "
          "<script>alert(2)</script>The CSV file is invalid.", jobs], BUSY_JOBS),
        ([busy, f"nightly-partial|{partial_id}", "users failed",
          "Succeeded: 900 imported, 40 skipped, 3 failed", jobs], BUSY_JOBS),
        ([busy, f"nightly-stuck|{stuck_id}", "active for over 6 h",
          "InProgress for 7 h 30 min, since its start", jobs], BUSY_JOBS),
        ([busy, f"nightly-waiting|{waiting_id}", "Created, close to expiry",
          "not started 21 h 30 min after its creation; Cognito expires it 24-48 h after "
          "creation", jobs], BUSY_JOBS),
    ]  # fmt: skip
    # untrusted text stayed text, and no pre-signed upload URL reached the page
    for markup in ("<script>", "<img", "<i>busy", "X-Amz-Signature", "cognito-idp-import-"):
        assert markup not in dom
    assert dom.index('id="problems"') < dom.index('id="pools"') < dom.index('id="jobs"')
    print(f"screenshot of the problems: {SCREENSHOT}")
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 20_000
    image = Image.open(SCREENSHOT).convert("RGB")
    assert image.size == (1280, 720)
    assert ImageStat.Stat(image.convert("L")).stddev[0] > 20
    # the red of failures and the tint of problem rows are on screen
    colours = {
        colour
        for _, colour in image.getcolors(maxcolors=1 << 20) or []
        if isinstance(colour, tuple)
    }
    assert (253, 243, 242) in colours
    assert any(red > 150 and green < 80 and blue < 80 for red, green, blue in colours)


@pytest.mark.slow
def test_status_page_renders_pools_and_recent_jobs(tmp_path: Path) -> None:
    binary = require_tool("chromium")
    with running_exporter("--demo", workdir=tmp_path) as demo:
        demo.scrape()
        url = f"{demo.base_url}/"
        dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url).stdout
        screenshot = tmp_path / "status.png"
        chromium(
            binary,
            tmp_path / "profile-shot",
            f"--screenshot={screenshot}",
            "--window-size=1280,1000",
            url,
        )
    pool_rows = re.findall(r'<tr><td><a href="([^"]+)">([\w-]+_\w+)</a></td>', dom)
    demo_pools = ["eu-west-1_Cust0mers1", "eu-west-1_Partn3rs22", "us-east-1_Staff00333",
                  "ap-southeast-2_Legacy4", "eu-west-1_Retired99"]  # fmt: skip
    assert sorted(pool_rows) == sorted((pool_url(pool_id, pool_id.split("_")[0]), pool_id)
                                       for pool_id in demo_pools)  # fmt: skip
    assert dom.count('<td class="ok">ok in') == 4
    assert '<td class="fail">failed</td><td>ResourceNotFound: ' in dom
    job_rows = re.findall(r"<tr><td>(customers|partners|staff|legacy-migration)</td>", dom)
    assert len(job_rows) >= 4
    image = Image.open(screenshot).convert("L")
    assert image.size == (1280, 1000)
    # a rendered table: dark text and borders on a light page, not a blank or error page
    histogram = image.histogram()
    dark = sum(histogram[:100]) / (image.size[0] * image.size[1])
    assert 0.005 < dark < 0.3
    assert ImageStat.Stat(image).stddev[0] > 20
