"""The landing page: links, and each pool's last collection and recent jobs, for a person.

Built from the scraper's last snapshot only, so looking at it never calls AWS.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence

from exporter import __version__
from exporter.collect.pool import PoolResult
from exporter.collect.scraper import Snapshot
from exporter.config.model import Pool

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#1d2330}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #c8ccd4;padding:0.3em 0.7em;text-align:left;font-size:0.92em}
th{background:#eef0f4}.ok{color:#17753a;font-weight:600}.fail{color:#b3261e;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def landing_page(pools: Sequence[Pool], snapshot: Snapshot | None) -> bytes:
    """Links, and each pool's last collection and recent jobs; never calls AWS."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Cognito import job exporter</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Cognito user import job exporter</h1>",
        f"<p>Version {html.escape(__version__)}. ",
        "<a href='/metrics'>Metrics</a> · <a href='/-/healthy'>Health</a> · ",
        "<a href='/-/ready'>Readiness</a></p>",
        "<h2>User pools</h2>",
        _pools_table(pools, snapshot),
        "<h2>Recent import jobs</h2>",
        _jobs_table(snapshot),
        "</body></html>",
    ]
    return "".join(parts).encode()


def _pools_table(pools: Iterable[Pool], snapshot: Snapshot | None) -> str:
    results = {result.pool.id: result for result in snapshot.results} if snapshot else {}
    rows = [
        "<table id='pools'><tr><th>Pool</th><th>Name</th><th>Region</th>"
        "<th>Last collection</th><th>Error</th><th>Jobs</th></tr>"
    ]
    for pool in pools:
        result = results.get(pool.id)
        rows.append(
            "<tr>"
            f"<td>{html.escape(pool.id)}</td><td>{html.escape(pool.name)}</td>"
            f"<td>{html.escape(pool.region)}</td>{_result_cells(result)}</tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _result_cells(result: PoolResult | None) -> str:
    if result is None:
        return "<td>not collected yet</td><td></td><td></td>"
    if not result.success:
        error = html.escape(f"{result.error_code}: {result.error_message or ''}")
        return f"<td class='fail'>failed</td><td>{error}</td><td></td>"
    statuses = result.outcome.statuses if result.outcome else {}
    summary = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()) if count)
    return (
        f"<td class='ok'>ok in {result.duration:.2f}s</td><td></td>"
        f"<td>{html.escape(summary or 'none')}</td>"
    )


def _jobs_table(snapshot: Snapshot | None) -> str:
    rows = [
        "<table id='jobs'><tr><th>Pool</th><th>Job</th><th>Status</th><th>Created</th>"
        "<th>Completed</th><th>Imported</th><th>Skipped</th><th>Failed</th></tr>"
    ]
    for result in snapshot.results if snapshot else ():
        for job in result.recent_jobs:
            rows.append(
                "<tr>"
                f"<td>{html.escape(result.pool.name)}</td>"
                f"<td>{html.escape(job.name)}<br><small>{html.escape(job.job_id)}</small></td>"
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
