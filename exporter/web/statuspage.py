"""The landing page: links, the problems that need a look, and each pool's last collection, the
age of the values it shows and its recent jobs, for a person.

Built from the scraper's last snapshot only, so looking at it never calls AWS. Plain HTML and
CSS: it reads the same without JavaScript.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from exporter import __version__
from exporter.cognito.jobs import Job
from exporter.collect.reasons_pool import ReasonsView
from exporter.collect.scraper import Snapshot
from exporter.collect.served import PoolResult
from exporter.config.model import Pool
from exporter.redaction import SECRETS
from exporter.web.console import import_jobs_url, pool_url
from exporter.web.reasons_html import reasons_html, reasons_state_html

# the alert rules' thresholds (prometheus/alerts.yml): a job running this long is stuck (here a
# Stopping job counts as running too); a job still Created this long after its creation is about
# to expire, which Cognito does to a job not started within 24-48 h
ACTIVE_TOO_LONG_AFTER = 6 * 3600.0
EXPIRY_WARNING_AFTER = 20 * 3600.0
RUNNING_STATUSES = frozenset({"Pending", "InProgress", "Stopping"})

COLLECTION_FAILING = "collection failing"
JOB_FAILED = "job failed"
USERS_FAILED = "users failed"
USERS_SKIPPED = "users skipped"
ACTIVE_TOO_LONG = f"active for over {ACTIVE_TOO_LONG_AFTER / 3600:g} h"
CLOSE_TO_EXPIRY = "Created, close to expiry"
_WORST = frozenset({COLLECTION_FAILING, JOB_FAILED})

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1d2330}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #c8ccd4;padding:0.3em 0.7em;text-align:left;font-size:0.92em}
th{background:#eef0f4}.ok{color:#17753a;font-weight:600}.fail{color:#b3261e;font-weight:600}
.warn{color:#8a4b00;font-weight:600}tr.problem td{background:#fdf3f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}p.note{max-width:60em}
#problems td{vertical-align:top}#problems small,td.console{white-space:nowrap}
ul.reasons{margin:0.3em 0;padding-left:1.2em}ul.reasons small{white-space:normal}
"""


@dataclass(frozen=True)
class Problem:
    """One thing on the page's Problems list: a pool or one of its jobs, what is wrong, the
    figures that say so, and where the console shows it. Plain text, escaped when shown."""

    pool_id: str
    pool_name: str
    job_id: str | None
    job_name: str | None
    kind: str
    detail: str
    link: str | None
    # the reasons of the pool the job is in, when it has any to tell
    reasons: ReasonsView | None = None


def problems(pools: Iterable[Pool], snapshot: Snapshot | None, now: float) -> list[Problem]:
    """What needs a look, worst first: pools whose last collection failed; recent jobs (active,
    or finished within `scrape.job_window`) that failed, then those whose users failed; jobs
    running for over 6 h; jobs Created for over 20 h; last the recent jobs that only skipped
    users (common, and harmless when the users exist already), so they never bury a failure.
    Active jobs come from every job the pool's history holds, so none hides behind
    `max_jobs_per_pool` newer ones."""
    results = {result.pool.id: result for result in snapshot.results} if snapshot else {}
    current = [results[pool.id] for pool in pools if pool.id in results]
    failing = [_collection_problem(result, now) for result in current if not result.success]
    finished = [
        problem
        for result in current
        for job in result.recent_jobs
        if (problem := _outcome_problem(result.pool, job, result.reasons)) is not None
    ]
    running = [
        _job_problem(result.pool, job, ACTIVE_TOO_LONG, _running_detail(job, now))
        for result in current
        for job in _active_jobs(result)
        if job.status in RUNNING_STATUSES and _running_for(job, now) > ACTIVE_TOO_LONG_AFTER
    ]
    expiring = [
        _job_problem(result.pool, job, CLOSE_TO_EXPIRY, _expiry_detail(job, now))
        for result in current
        for job in _active_jobs(result)
        if job.status == "Created" and _created_for(job, now) > EXPIRY_WARNING_AFTER
    ]
    first = [problem for problem in finished if problem.kind != USERS_SKIPPED]
    skipped = [problem for problem in finished if problem.kind == USERS_SKIPPED]
    return failing + sorted(first, key=_worst) + running + expiring + skipped


def landing_page(
    pools: Sequence[Pool], snapshot: Snapshot | None, now: float | None = None
) -> bytes:
    """Links, the problems, and each pool's last collection and recent jobs; never calls AWS."""
    shown_at = time.time() if now is None else now
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        # console links must not tell AWS where the exporter's page is
        "<meta name='referrer' content='no-referrer'>",
        "<title>Cognito import job exporter</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Cognito user import job exporter</h1>",
        f"<p>Version {html.escape(__version__)}. ",
        "<a href='/metrics'>Metrics</a> · <a href='/-/healthy'>Health</a> · ",
        "<a href='/-/ready'>Readiness</a> · <a href='/exporter-metrics'>Exporter metrics</a></p>",
        "<h2>Problems</h2>",
        _problems_section(pools, snapshot, shown_at),
        "<h2>User pools</h2>",
        _pools_table(pools, snapshot, shown_at),
        "<h2>Recent import jobs</h2>",
        _jobs_table(snapshot),
        "</body></html>",
    ]
    return "".join(parts).encode()


def _collection_problem(result: PoolResult, now: float) -> Problem:
    pool = result.pool
    reason = f"{result.error_code}: {result.error_message or ''} ({_shown_data(result, now)})"
    return Problem(
        pool.id, pool.name, None, None, COLLECTION_FAILING, reason, pool_url(pool.id, pool.region)
    )


def _outcome_problem(pool: Pool, job: Job, reasons: ReasonsView | None) -> Problem | None:
    if job.status == "Failed":
        kind = JOB_FAILED
    elif job.failed:
        kind = USERS_FAILED
    elif job.skipped:
        kind = USERS_SKIPPED
    else:
        return None
    detail = f"{job.status}: {job.imported} imported, {job.skipped} skipped, {job.failed} failed"
    if job.completion_message:
        detail += f". {_shown(job.completion_message)}"
    return replace(_job_problem(pool, job, kind, detail), reasons=reasons)


def _worst(problem: Problem) -> int:
    """Failed jobs before jobs that failed users (the sort keeps each pool's order)."""
    return 0 if problem.kind == JOB_FAILED else 1


def _job_problem(pool: Pool, job: Job, kind: str, detail: str) -> Problem:
    return Problem(
        pool.id,
        pool.name,
        job.job_id,
        job.name,
        kind,
        detail,
        import_jobs_url(pool.id, pool.region),
    )


def _active_jobs(result: PoolResult) -> Iterator[Job]:
    jobs = result.outcome.jobs if result.outcome else result.recent_jobs
    return (job for job in jobs if not job.terminal)


def _running_for(job: Job, now: float) -> float:
    return 0.0 if (since := _running_since(job, now)) is None else now - since


def _running_since(job: Job, now: float) -> float | None:
    """The start, or the creation when there is no start or it lies ahead (a skewed clock
    must not hide a job that has waited for hours)."""
    if job.started is not None and job.started <= now:
        return job.started
    return job.created


def _created_for(job: Job, now: float) -> float:
    return 0.0 if job.created is None else now - job.created


def _running_detail(job: Job, now: float) -> str:
    since = "its start" if _running_since(job, now) == job.started else "its creation"
    return f"{job.status} for {_duration(_running_for(job, now))}, since {since}"


def _expiry_detail(job: Job, now: float) -> str:
    return (
        f"not started {_duration(_created_for(job, now))} after its creation; "
        "Cognito expires it 24-48 h after creation"
    )


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60} min"


def _age(result: PoolResult, now: float) -> str:
    """How long ago the pool was last refreshed successfully: what its values are as of."""
    if result.refreshed_at is None:
        return ""
    # a refresh stamped ahead of the page's clock (the clock was set back) is as new as it gets
    seconds = int(max(0.0, now - result.refreshed_at))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min {seconds % 60} s"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // 1440} d {minutes // 60 % 24} h"


def _shown_data(result: PoolResult, now: float) -> str:
    """What a failing pool still shows: its last good values and their age, or nothing."""
    age = _age(result, now)
    return f"values shown are {age} old" if age else "nothing read yet"


def _shown(text: str) -> str:
    """A service's free text as the page may show it: secrets and signing parameters out
    (as in the log), anything unprintable escaped."""
    text = SECRETS(text)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _problems_section(pools: Iterable[Pool], snapshot: Snapshot | None, now: float) -> str:
    note = (
        "<p class='note'>From the last collection, ages as of "
        f"{_when(now)}: pools whose collection failed (they show their last good values); "
        "recent jobs (active, or finished within "
        "<code>scrape.job_window</code>) that failed or failed users; jobs Pending, "
        f"InProgress or Stopping for over {ACTIVE_TOO_LONG_AFTER / 3600:g} h; jobs still "
        f"Created {EXPIRY_WARNING_AFTER / 3600:g} h after their creation (Cognito expires a job "
        "not started within 24-48 h); last, recent jobs that skipped users.</p>"
    )
    if snapshot is None:
        return note + "<p id='no-problems'>Nothing collected yet.</p>"
    found = problems(pools, snapshot, now)
    if not found:
        return note + "<p id='no-problems' class='ok'>No problems.</p>"
    rows = [
        "<table id='problems'><tr><th>Pool</th><th>Job</th><th>Problem</th><th>Details</th>"
        "<th>Console</th></tr>"
    ]
    for problem in found:
        job = (
            ""
            if problem.job_id is None
            else f"{html.escape(_shown(problem.job_name or ''))}<br><small>"
            f"{html.escape(problem.job_id)}</small>"
        )
        severity = "fail" if problem.kind in _WORST else "warn"
        target = "pool" if problem.job_id is None else "import jobs"
        rows.append(
            "<tr class='problem'>"
            f"<td>{html.escape(_shown(problem.pool_name))}<br><small>{html.escape(problem.pool_id)}"
            f"</small></td><td>{job}</td>"
            f"<td class='{severity}'>{html.escape(problem.kind)}</td>"
            f"<td>{html.escape(problem.detail)}{_reasons(problem)}</td>"
            f"<td class='console'>{_link(problem.link, f'{target} in console')}</td></tr>"
        )
    rows.append("</table>")
    return note + "".join(rows)


def _reasons(problem: Problem) -> str:
    return "" if problem.job_id is None else reasons_html(problem.reasons, problem.job_id)


def _link(url: str | None, text: str) -> str:
    if url is None:
        return html.escape(text)
    return f"<a href='{html.escape(url)}'>{html.escape(text)}</a>"


def _pools_table(pools: Iterable[Pool], snapshot: Snapshot | None, now: float) -> str:
    results = {result.pool.id: result for result in snapshot.results} if snapshot else {}
    rows = [
        "<table id='pools'><tr><th>Pool</th><th>Name</th><th>Region</th>"
        "<th>Last collection</th><th>Error</th><th>Data age</th><th>Jobs</th></tr>"
    ]
    for pool in pools:
        result = results.get(pool.id)
        rows.append(
            "<tr>"
            f"<td>{_link(pool_url(pool.id, pool.region), pool.id)}</td>"
            f"<td>{html.escape(_shown(pool.name))}</td>"
            f"<td>{html.escape(pool.region)}</td>{_result_cells(result, now)}</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _result_cells(result: PoolResult | None, now: float) -> str:
    """Last collection, error, data age and job counts; a failing pool still shows the
    values of its last good collection."""
    if result is None:
        return "<td>not collected yet</td><td></td><td></td><td></td>"
    if not result.attempted:
        return "<td>not read yet</td><td></td><td></td><td></td>"
    statuses = result.outcome.statuses if result.outcome else {}
    summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()) if count)
    jobs = (
        html.escape(summary or "none") + reasons_state_html(result.reasons)
        if result.outcome
        else ""
    )
    age = html.escape(_age(result, now))
    if not result.success:
        error = html.escape(f"{result.error_code}: {result.error_message or ''}")
        shown = age or "nothing read yet"
        return f"<td class='fail'>failed</td><td>{error}</td><td>{shown}</td><td>{jobs}</td>"
    took = f"ok in {result.duration:.2f}s"
    return f"<td class='ok'>{took}</td><td></td><td>{age}</td><td>{jobs}</td>"


def _jobs_table(snapshot: Snapshot | None) -> str:
    rows = [
        "<table id='jobs'><tr><th>Pool</th><th>Job</th><th>Status</th><th>Created</th>"
        "<th>Completed</th><th>Imported</th><th>Skipped</th><th>Failed</th></tr>"
    ]
    for result in snapshot.results if snapshot else ():
        pool = result.pool
        console = import_jobs_url(pool.id, pool.region)
        for job in result.recent_jobs:
            rows.append(
                "<tr>"
                f"<td>{html.escape(_shown(pool.name))}</td>"
                f"<td>{html.escape(_shown(job.name))}<br>"
                f"<small>{_link(console, job.job_id)}</small></td>"
                f"<td>{html.escape(job.status)}</td>"
                f"<td>{_when(job.created)}</td><td>{_when(job.completed)}</td>"
                f"<td class='num'>{job.imported}</td><td class='num'>{job.skipped}</td>"
                f"<td class='num'>{job.failed}</td></tr>"
            )
    rows.append("</table>")
    return "".join(rows)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
    except (OverflowError, OSError, ValueError):
        # a date outside what the calendar functions take: shown as the number it is
        return html.escape(f"{timestamp:.0f}")
