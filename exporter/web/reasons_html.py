"""A problem job's reasons on the status page: users by outcome and reason, with a few of the
log's own lines (line numbers and the service's text, redacted and escaped when read)."""

from __future__ import annotations

import html

from exporter.collect.reasons_pool import DENIED, NO_LOG_ROLE, OFF, ReasonsView

_NOT_READ = {
    DENIED: "not read: logs:FilterLogEvents is denied (until the next reload)",
    NO_LOG_ROLE: "not read: the pool's latest jobs write no CloudWatch log",
}


def reasons_html(view: ReasonsView | None, job_id: str) -> str:
    """What the job's log says of its skipped and failed users, as HTML for a table cell;
    empty for a pool whose reasons are off."""
    if view is None or view.state == OFF:
        return ""
    read = view.jobs.get(job_id)
    if read is None:
        why = _NOT_READ.get(view.state, "not read yet (finished jobs are read in the background)")
        return f"<br><small class='reasons'>Reasons {html.escape(why)}</small>"
    why = "" if read.problem is None else f" ({html.escape(read.problem)})"
    if not read.counts:
        return f"<br><small class='reasons'>Reasons: the job's log could not be read{why}</small>"
    parts = ["<ul class='reasons'>"]
    for (outcome, reason), users in sorted(read.counts.items(), key=lambda item: -item[1]):
        parts.append(f"<li>{users} {html.escape(outcome)}: {html.escape(reason)}")
        for example in read.examples:
            if (example.outcome, example.reason) == (outcome, reason):
                parts.append(f"<br><small>line {example.line}: {html.escape(example.text)}</small>")
        parts.append("</li>")
    if not read.complete:
        parts.append(
            f"<li><small>not every skipped or failed user was found in the log{why}</small></li>"
        )
    parts.append("</ul>")
    return "".join(parts)


def reasons_state_html(view: ReasonsView | None) -> str:
    """A pool's reading of reasons, as HTML to follow its job counts: why it reads none, or
    how many finished jobs wait to be read; empty when there is nothing to say."""
    if view is None or view.state == OFF:
        return ""
    if view.state in _NOT_READ:
        return f"<br><small class='reasons'>Reasons {html.escape(_NOT_READ[view.state])}</small>"
    if view.waiting:
        return f"<br><small class='reasons'>Reasons: {view.waiting} finished jobs to read</small>"
    return ""
