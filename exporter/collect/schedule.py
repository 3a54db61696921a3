"""When each pool is refreshed, so that a region of many pools stays within its budget.

Cognito's read quota is per account and Region (20 requests a second by default, of which the
exporter's budget is half), so a region of many pools cannot have every pool read at every
scrape. For each account and region:

- When one scrape's window affords every pool (the calls each pool's last refresh took, summed,
  within SMALL_FLEET_SHARE of the budget over the window), every pool is refreshed at every
  scrape: small fleets behave as they always did.
- Otherwise a scrape refreshes the pools with an active job (jobs change only while one is
  active), and the others are refreshed in the background between scrapes when they fall due,
  the most overdue first: a pool whose jobs moved within RECENT_HORIZONS max_stalenesses
  (imports come in bursts) every RECENT_PERIOD of max_staleness, any other every IDLE_PERIOD
  of it. Both sit below max_staleness, so a pool that waits its turn is still within it.
- Full re-reads take what freshness leaves of the budget (FULL_SHARE of it; the rest is room
  to catch up after a cold start or a burst of imports): when the configured
  full_resync_interval needs more, the interval in force is stretched until the re-reads fit.
  That, and a region whose pools cannot all be kept within max_staleness, is said once in the
  log and shown in a gauge.

The default max_staleness, 5 minutes, is what the default budget affords a region of 1,000
pools, Cognito's default quota of pools per account: refreshing 1,000 idle pools every 3.75
minutes takes 4.4 of the 10 requests a second, and leaves the rest to active pools and full
re-reads.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from exporter.collect.attempts import AccountRegion
from exporter.collect.metrics import ExporterMetrics
from exporter.config.schema import Scrape

log = logging.getLogger(__name__)

SMALL_FLEET_SHARE = 0.8
IDLE_PERIOD = 0.75
RECENT_PERIOD = 0.25
RECENT_HORIZONS = 12
FULL_SHARE = 0.5
# the longest a full re-read is put off, when freshness alone takes the whole budget
MAX_FULL_RESYNC_SECONDS = 7 * 86400.0
# what a scrape interval is taken to be before two scrapes were seen (Prometheus' default),
# and how many collections tell it
DEFAULT_SCRAPE_INTERVAL = 60.0
SCRAPES_TIMED = 16
# a pool due this share of max_staleness from now is refreshed now: the background looks at
# the fleet once in that long, not at every refresh
EARLY_SHARE = 0.02
# probes counted to tell a region's probe rate, over this long and at most this many
PROBE_RATE_SECONDS = 60.0
MAX_PROBES_KEPT = 100_000
# falling behind is said again only after this many max_stalenesses
BEHIND_REPEAT_HORIZONS = 12

T = TypeVar("T")


@dataclass(frozen=True)
class Standing:
    """What the schedule knows of one pool: times on the monotonic clock, except
    `last_change` (seconds since the epoch, as jobs tell it)."""

    account: AccountRegion
    since: float
    attempted_at: float | None
    active: bool
    last_change: float | None
    calls: int
    full_calls: int

    def period(self, max_staleness: float, wall_now: float) -> float:
        """How often the pool is refreshed in the background."""
        recent = self.active or (
            self.last_change is not None
            and wall_now - self.last_change < RECENT_HORIZONS * max_staleness
        )
        return max_staleness * (RECENT_PERIOD if recent else IDLE_PERIOD)

    def due(self, max_staleness: float, wall_now: float) -> float:
        """When the pool is next refreshed in the background (a pool never read: at once)."""
        if self.attempted_at is None:
            return self.since
        return self.attempted_at + self.period(max_staleness, wall_now)


@dataclass
class _Region:
    """What was last said of one account and region."""

    behind_since_logged: float | None = None
    behind: bool = False
    # the region's falling behind was said, so its catching up is said too
    announced: bool = False
    stretched: bool = False


class RefreshPlanner:
    def __init__(
        self,
        budget_rate: Callable[[AccountRegion], float],
        metrics: ExporterMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._budget_rate = budget_rate
        self._metrics = metrics
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._scrape = Scrape()
        # the regions too large to refresh every pool at every scrape, as the last scrape saw
        self._large: frozenset[AccountRegion] = frozenset()
        # the regions whose probes, each refreshing, would outgrow the budget
        self._probed_large: set[AccountRegion] = set()
        self._full_intervals: dict[AccountRegion, float] = {}
        self._regions: dict[AccountRegion, _Region] = {}
        # when the last collections started: their rate, not the gap between two of them
        # (an HA pair's scrapes come in pairs a moment apart)
        self._scrapes: deque[float] = deque(maxlen=SCRAPES_TIMED)
        # when each region's probes of the last PROBE_RATE_SECONDS arrived
        self._probes: dict[AccountRegion, deque[float]] = {}

    def configure(self, scrape: Scrape) -> None:
        self._scrape = scrape

    @property
    def background_needed(self) -> bool:
        return bool(self._large)

    def for_scrape(
        self,
        pools: Sequence[tuple[T, Standing]],
        window: float,
        now: float,
        probed: Sequence[Standing] = (),
    ) -> list[T]:
        """The pools a scrape starting `now` with `window` seconds refreshes; decides the way
        of each account and region (`probed`: the pools only probed, which share budgets)."""
        with self._lock:
            self._scrapes.append(now)
        calls: dict[AccountRegion, int] = defaultdict(int)
        for _, standing in pools:
            calls[standing.account] += standing.calls
        self._large = frozenset(
            account
            for account, needed in calls.items()
            if needed > self._budget_rate(account) * max(0.0, window) * SMALL_FLEET_SHARE
        )
        self._assess([*(standing for _, standing in pools), *probed], now)
        return [item for item, standing in pools if self.refreshed_at_scrapes(standing)]

    def assess(self, standings: Sequence[Standing], now: float) -> None:
        """The full re-read interval and lag of every region of `standings`, for exporters
        scraped through /probe alone."""
        self._assess(standings, now)

    def in_background(
        self, pools: Sequence[tuple[T, Standing]], now: float
    ) -> tuple[list[T], float | None]:
        """The pools to refresh in the background now, the most overdue first, and when the
        next one falls due (None: none will)."""
        max_staleness = self._scrape.max_staleness
        wall_now = self._wall_clock()
        ready: list[tuple[float, int, T]] = []
        next_due: float | None = None
        if not self._scraped_lately(now):
            return [], None
        soon = now + max_staleness * EARLY_SHARE
        for order, (item, standing) in enumerate(pools):
            if standing.account not in self._large:
                continue
            due = standing.due(max_staleness, wall_now)
            if due <= soon:
                ready.append((due, order, item))
            elif next_due is None or due < next_due:
                next_due = due
        self._assess([standing for _, standing in pools], now)
        return [item for _, _, item in sorted(ready)], next_due

    def due_in_background(self, standing: Standing, now: float) -> bool:
        max_staleness = self._scrape.max_staleness
        soon = now + max_staleness * EARLY_SHARE
        return (
            standing.account in self._large
            and standing.due(max_staleness, self._wall_clock()) <= soon
        )

    def refreshed_at_scrapes(self, standing: Standing) -> bool:
        return standing.account not in self._large or standing.active

    def due_for_probe(self, standing: Standing, now: float) -> bool:
        """Whether a probe refreshes the pool, or serves what is known of it. Probes come one
        pool at a time, spread over Prometheus' interval: a region whose probes of the last
        minute, each refreshing, would fit in the budget refreshes at every probe; otherwise
        (or when /metrics finds the region large) only what is due."""
        account = standing.account
        with self._lock:
            probes = self._probes.setdefault(account, deque(maxlen=MAX_PROBES_KEPT))
            probes.append(now)
            while probes and probes[0] <= now - PROBE_RATE_SECONDS:
                probes.popleft()
            probe_rate = len(probes) / PROBE_RATE_SECONDS
        affordable = probe_rate * standing.calls <= self._budget_rate(account) * SMALL_FLEET_SHARE
        with self._lock:
            if affordable:
                self._probed_large.discard(account)
            else:
                self._probed_large.add(account)
        if standing.active or (account not in self._large and affordable):
            return True
        return standing.due(self._scrape.max_staleness, self._wall_clock()) <= now

    def full_resync_interval(self, account: AccountRegion) -> float:
        """The full re-read interval in force for the account and region."""
        return self._full_intervals.get(account, self._scrape.full_resync_interval)

    def _assess(self, standings: Sequence[Standing], now: float) -> None:
        """The full re-read interval each region can afford, and how far behind it is."""
        by_account: dict[AccountRegion, list[Standing]] = defaultdict(list)
        for standing in standings:
            by_account[standing.account].append(standing)
        intervals: dict[AccountRegion, float] = {}
        behind: dict[AccountRegion, float] = {}
        for account, members in by_account.items():
            rate = self._budget_rate(account)
            intervals[account] = self._affordable_full_interval(account, members, rate)
            behind[account] = self._behind(account, members, now)
            self._say(account, intervals[account], behind[account], now)
        with self._lock:
            gone = set(self._full_intervals) - set(intervals)
            self._full_intervals = intervals
            for account in gone:
                self._regions.pop(account, None)
        metrics = self._metrics
        if metrics is None:
            return
        for account, interval in intervals.items():
            labels = (account.account, account.region)
            metrics.full_resync_interval.labels(*labels).set(interval)
            metrics.refresh_behind.labels(*labels).set(behind[account])
        for account in gone:
            metrics.full_resync_interval.remove(account.account, account.region)
            metrics.refresh_behind.remove(account.account, account.region)

    def _scrape_period(self) -> float:
        """Seconds between collections, on average over the last few."""
        with self._lock:
            scrapes = tuple(self._scrapes)
        if not scrapes:
            return DEFAULT_SCRAPE_INTERVAL
        first, last, count = scrapes[0], scrapes[-1], len(scrapes)
        # until the collections seen span a default interval, they tell nothing of it
        if count < 2 or last - first < DEFAULT_SCRAPE_INTERVAL:
            return DEFAULT_SCRAPE_INTERVAL
        return (last - first) / (count - 1)

    def _scraped_lately(self, now: float) -> bool:
        """Whether /metrics is being scraped: the background refreshes its pools only then (a
        replica serving /probe keeps to the pools it is probed for, whoever once read /metrics)."""
        with self._lock:
            last = self._scrapes[-1] if self._scrapes else None
        horizon = max(self._scrape.max_staleness, 2 * self._scrape_period())
        return last is not None and now - last <= horizon

    def _spread(self, account: AccountRegion) -> bool:
        """Whether the region's idle pools are refreshed by age, not at every scrape."""
        return account in self._large or account in self._probed_large

    def _affordable_full_interval(
        self, account: AccountRegion, members: Sequence[Standing], rate: float
    ) -> float:
        scrape = self._scrape
        large = self._spread(account)
        wall_now = self._wall_clock()
        fresh = 0.0
        for standing in members:
            if large and not standing.active:
                period = standing.period(scrape.max_staleness, wall_now)
            else:
                period = self._scrape_period()
            fresh += standing.calls / max(period, 1.0)
        spare = (rate - fresh) * FULL_SHARE
        full_calls = sum(standing.full_calls for standing in members)
        configured = scrape.full_resync_interval
        if spare <= 0:
            return MAX_FULL_RESYNC_SECONDS
        needed = full_calls / spare
        if needed <= max(configured, 1.0):  # a second's stretch is none (0s: at every refresh)
            return configured
        # whole seconds: an interval that moved by a fraction would move every pool's next read
        return min(MAX_FULL_RESYNC_SECONDS, math.ceil(needed))

    def _behind(self, account: AccountRegion, members: Sequence[Standing], now: float) -> float:
        """How far the region's most overdue pool is past max_staleness (0 for a region whose
        pools are refreshed at every scrape: their age is the scrape interval's)."""
        if not self._spread(account):
            return 0.0
        max_staleness = self._scrape.max_staleness
        oldest = min(
            (s.attempted_at if s.attempted_at is not None else s.since for s in members),
            default=now,
        )
        return max(0.0, now - oldest - max_staleness)

    def _say(self, account: AccountRegion, interval: float, behind: float, now: float) -> None:
        """Log a region that starts or stops being stretched or behind, once each way."""
        scrape = self._scrape
        fields = {"account_id": account.account, "region": account.region}
        with self._lock:
            region = self._regions.setdefault(account, _Region())
            stretched = interval > scrape.full_resync_interval
            stretch_changed = stretched != region.stretched
            region.stretched = stretched
            repeat_after = BEHIND_REPEAT_HORIZONS * scrape.max_staleness
            last_logged = region.behind_since_logged
            say_behind = (
                behind > 0
                and not region.behind
                and (last_logged is None or now - last_logged >= repeat_after)
            )
            say_caught_up = behind == 0 and region.behind and region.announced
            region.behind = behind > 0
            if say_behind:
                region.behind_since_logged = now
                region.announced = True
            elif say_caught_up:
                region.announced = False
        if stretch_changed and stretched:
            log.warning(
                "full re-reads are stretched: the budget cannot afford full_resync_interval "
                "beside keeping every pool within max_staleness",
                extra={
                    "fields": fields
                    | {
                        "full_resync_interval": f"{scrape.full_resync_interval:g}s",
                        "in_force": f"{round(interval)}s",
                    }
                },
            )
        elif stretch_changed:
            log.info("full re-reads are back to full_resync_interval", extra={"fields": fields})
        if say_behind:
            log.warning(
                "pools cannot all be kept within max_staleness at the budget; the oldest are "
                "refreshed first",
                extra={"fields": fields | {"behind_seconds": f"{behind:.1f}"}},
            )
        elif say_caught_up:
            log.info("every pool is within max_staleness again", extra={"fields": fields})
