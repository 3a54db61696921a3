"""Why users were skipped or failed: an import job's log rows, each read into an outcome and
a reason from a closed set.

A row reads `[FAILED] Line Number 5956 - <the service's text>`. The text is matched on its
meaning (a few words that any wording of the cause holds), not on its exact sentence, so a
reworded message still lands in its reason, and one of a new kind lands in `other` instead
of making a new series. Lines that are not rows (`Cognito User Pools Import - Test Log`) and
rows of imported users count for nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.redaction import redact_user_data, safe_text

ALREADY_EXISTS = "already_exists"
NO_VERIFIED_ATTRIBUTE = "no_verified_attribute"
SCHEMA_MISMATCH = "schema_mismatch"
INTERNAL_ERROR = "internal_error"
OTHER = "other"
REASONS = (ALREADY_EXISTS, NO_VERIFIED_ATTRIBUTE, SCHEMA_MISMATCH, INTERNAL_ERROR, OTHER)
ROW_OUTCOMES = ("skipped", "failed")
EXAMPLES_PER_REASON = 3
EXAMPLE_CHARS = 200
# rows are told apart by line number up to here (a bitmap of 2 MB an outcome at most)
MAX_LINE_SEEN = 1 << 24

_ROW = re.compile(
    r"\s*\[\s*(SUCCEEDED|SKIPPED|FAILED)\s*\]\s*Line\s*Number\s*:?\s*(\d{1,12})(?:\s*[-:]\s*|\s+|$)(.*)",
    re.IGNORECASE | re.DOTALL,
)
# words, also inside CamelCase names (InternalError: internal, error)
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
# each reason with the words that say it, in the order they are tried: a row that names a
# verified attribute may also speak of the schema, and is about the attribute
_MEANINGS: tuple[tuple[str, tuple[frozenset[str], ...]], ...] = (
    (
        NO_VERIFIED_ATTRIBUTE,
        (frozenset({"verified", "attribute"}), frozenset({"verified", "attributes"})),
    ),
    (
        ALREADY_EXISTS,
        (
            frozenset({"already", "exists"}),
            frozenset({"already", "exist"}),
            frozenset({"duplicate"}),
        ),
    ),
    (
        INTERNAL_ERROR,
        (
            frozenset({"internal"}),
            frozenset({"unexpected", "error"}),
            frozenset({"service", "error"}),
        ),
    ),
    (
        SCHEMA_MISMATCH,
        (
            frozenset({"schema"}),
            frozenset({"match"}),
            frozenset({"invalid"}),
            frozenset({"required"}),
            frozenset({"format"}),
            frozenset({"mismatch"}),
        ),
    ),
)


@dataclass(frozen=True)
class Row:
    """One CSV row's line in a job's log: its outcome (lower case), line number and text."""

    outcome: str
    line: int
    text: str


def parse_row(message: str) -> Row | None:
    """The row a log line tells of; None for a line that is not a row."""
    match = _ROW.match(message)
    if match is None:
        return None
    return Row(match.group(1).lower(), int(match.group(2)), match.group(3).strip())


def reason_of(text: str) -> str:
    """The reason a row's text gives, from the closed set."""
    words = {word.casefold() for word in _WORD.findall(text)}
    for reason, wordings in _MEANINGS:
        if any(wording <= words for wording in wordings):
            return reason
    return OTHER


@dataclass(frozen=True)
class Example:
    """A row shown as an example of its reason: line number and the service's text,
    redacted, escaped and cut short."""

    line: int
    outcome: str
    reason: str
    text: str


class LinesSeen:
    """Line numbers seen, a bit each, in a bitmap grown as far as the highest line seen (a
    job of 500,000 rows costs 62.5 kB). Lines past `MAX_LINE_SEEN` are not remembered."""

    def __init__(self) -> None:
        self._bits = bytearray()

    def first_time(self, line: int) -> bool:
        """Whether `line` was not seen before; it is seen from now on."""
        if line >= MAX_LINE_SEEN:
            return True
        byte, mask = line >> 3, 1 << (line & 7)
        if byte >= len(self._bits):
            wanted = max(byte + 1, 2 * len(self._bits))
            self._bits.extend(bytes(min(wanted, MAX_LINE_SEEN >> 3) - len(self._bits)))
        if self._bits[byte] & mask:
            return False
        self._bits[byte] |= mask
        return True


@dataclass
class ReasonTally:
    """Users counted by outcome and reason while a job's log is read, with a few examples.

    A row is counted once however often the log gives it (the same event on two pages, a
    line written twice), and never more users of an outcome than the job itself reports
    (`users_per_outcome`, when given)."""

    users_per_outcome: Mapping[str, int] | None = None
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[Example] = field(default_factory=list)
    _outcome_users: Counter[str] = field(default_factory=Counter)
    _seen: dict[str, LinesSeen] = field(default_factory=dict)

    @property
    def users(self) -> int:
        return sum(self.counts.values())

    def add(self, messages: Iterable[str]) -> None:
        for message in messages:
            row = parse_row(message)
            if row is None or row.outcome not in ROW_OUTCOMES or self._full(row.outcome):
                continue
            if not self._seen.setdefault(row.outcome, LinesSeen()).first_time(row.line):
                continue
            reason = reason_of(row.text)
            key = (row.outcome, reason)
            self.counts[key] += 1
            self._outcome_users[row.outcome] += 1
            if self.counts[key] <= EXAMPLES_PER_REASON:
                self.examples.append(Example(row.line, row.outcome, reason, example_text(row.text)))

    def _full(self, outcome: str) -> bool:
        caps = self.users_per_outcome
        return caps is not None and self._outcome_users[outcome] >= caps.get(outcome, 0)


def example_text(text: str) -> str:
    """A row's text as an example shows it: what could be a user's data or a secret taken
    out, unprintable characters escaped, cut short (escaping can make a text longer; what is
    kept is as long as it says)."""
    return safe_text(redact_user_data(text), EXAMPLE_CHARS)[:EXAMPLE_CHARS]
