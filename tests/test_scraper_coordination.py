"""The Scraper's own rules, with fake tracked pools and a stepping clock, no HTTP: concurrent
scrapes share one collection, a joiner with more time collects again what ran out, cache_ttl,
deadlines, and pools dropped while a collection runs."""

from __future__ import annotations

import threading
from collections.abc import Callable

from exporter.collect.attempts import AccountRegion
from exporter.collect.schedule import Standing
from exporter.collect.scraper import REPORT_GRACE_SECONDS, Scraper
from exporter.collect.served import TIMEOUT, PoolResult
from exporter.config.model import Pool
from exporter.config.schema import Scrape
from tests.clocks import SteppingClock

# a fake pool blocked on purpose is released by the test; this only ends a broken test
RELEASE_TIMEOUT = 10.0


def pool(pool_id: str) -> Pool:
    return Pool(pool_id, pool_id, "eu-west-1", "default", None, (), 60, 1000)


class FakeTracked:
    """A tracked pool whose collection does what `behaviour` says, and counts what it is
    asked."""

    def __init__(
        self,
        pool: Pool,
        clock: SteppingClock,
        behaviour: Callable[[FakeTracked, float], PoolResult] | None = None,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._attempted_at: float | None = None
        self._behaviour = behaviour or (lambda tracked, deadline: PoolResult(tracked.pool, 0.1))
        self.deadlines: list[float] = []
        self.dropped = False
        self._latest: PoolResult | None = None
        self.started = threading.Event()

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def timed_out_last(self) -> bool:
        return False

    def follow(self, pool: Pool) -> None:
        self._pool = pool

    def collect(self, deadline: float, *, background: bool = False) -> PoolResult:
        self.deadlines.append(deadline)
        self.started.set()
        self._latest = self._behaviour(self, deadline)
        self._attempted_at = self._clock.now()
        return self._latest

    def latest(self) -> PoolResult:
        return self._latest or PoolResult(self._pool, 0.0)

    def standing(self) -> Standing:
        account = AccountRegion("111122223333", "eu-west-1")
        return Standing(account, 0.0, self._attempted_at, False, None, 1, 1)

    def drop(self) -> None:
        self.dropped = True


class FakeTracker:
    def __init__(self, clock: SteppingClock) -> None:
        self.clock = clock
        self.behaviours: dict[str, Callable[[FakeTracked, float], PoolResult]] = {}
        self.made: dict[str, FakeTracked] = {}

    def track(self, pool: Pool, *, listed: bool = True) -> FakeTracked:
        tracked = FakeTracked(pool, self.clock, self.behaviours.get(pool.id))
        self.made[pool.id] = tracked
        return tracked


def scraper_of(
    pool_ids: tuple[str, ...], clock: SteppingClock, **scrape: float
) -> tuple[Scraper, FakeTracker]:
    tracker = FakeTracker(clock)
    settings = Scrape.model_validate(scrape)
    scraper = Scraper([pool(pool_id) for pool_id in pool_ids], settings, tracker, clock.now)
    return scraper, tracker


def refreshed_by(deadline: float) -> float:
    """The deadline a refresh for a scrape due at `deadline` gets (windows of a second or more)."""
    return deadline - REPORT_GRACE_SECONDS


def test_concurrent_scrapes_share_one_collection() -> None:
    clock = SteppingClock()
    release = threading.Event()
    scraper, tracker = scraper_of(("a", "b"), clock)

    def held(tracked: FakeTracked, deadline: float) -> PoolResult:
        release.wait(RELEASE_TIMEOUT)
        return PoolResult(tracked.pool, 0.1)

    tracker.made["a"]._behaviour = held
    answers: list[tuple[bool, ...]] = []

    def scrape() -> None:
        answers.append(tuple(r.success for r in scraper.collect(clock.now() + 10).results))

    threads = [threading.Thread(target=scrape) for _ in range(5)]
    threads[0].start()
    assert tracker.made["a"].started.wait(RELEASE_TIMEOUT)
    for thread in threads[1:]:
        thread.start()
    release.set()
    for thread in threads:
        thread.join(RELEASE_TIMEOUT)
    assert answers == [(True, True)] * 5
    assert [len(tracker.made[p].deadlines) for p in ("a", "b")] == [1, 1]


def test_a_scrape_after_the_collection_finished_collects_again() -> None:
    clock = SteppingClock()
    scraper, tracker = scraper_of(("a",), clock)
    scraper.collect(10.0)
    clock.sleep(5)
    snapshot = scraper.collect(15.0)
    assert not snapshot.cached
    assert tracker.made["a"].deadlines == [refreshed_by(10.0), refreshed_by(15.0)]


def test_a_joiner_with_more_time_collects_again_what_ran_out() -> None:
    clock = SteppingClock()
    scraper, tracker = scraper_of(("slow", "quick"), clock)

    def runs_out_first(tracked: FakeTracked, deadline: float) -> PoolResult:
        if len(tracked.deadlines) == 1:
            return PoolResult(tracked.pool, 1.0, error_code=TIMEOUT)
        return PoolResult(tracked.pool, 0.2)

    tracker.made["slow"]._behaviour = runs_out_first
    short = scraper.collect(deadline=1.0)
    clock.sleep(1.5)
    # a scrape that arrived before that collection ended, with time to spare, joins it
    long = scraper.collect(deadline=10.0, arrived=0.0)
    assert [r.error_code for r in short.results] == [TIMEOUT, None]
    assert [r.error_code for r in long.results] == [None, None]
    assert tracker.made["slow"].deadlines == [refreshed_by(1.0), refreshed_by(10.0)]
    assert tracker.made["quick"].deadlines == [refreshed_by(1.0)]


def test_a_joiner_with_too_little_time_left_does_not_extend() -> None:
    clock = SteppingClock()
    scraper, tracker = scraper_of(("slow",), clock)

    def runs_out(tracked: FakeTracked, deadline: float) -> PoolResult:
        return PoolResult(tracked.pool, 1.0, error_code=TIMEOUT)

    tracker.made["slow"]._behaviour = runs_out
    scraper.collect(deadline=1.0)
    clock.sleep(1.5)
    joined = scraper.collect(deadline=2.0, arrived=0.0)  # 0.5 s left: under a second
    assert [r.error_code for r in joined.results] == [TIMEOUT]
    assert tracker.made["slow"].deadlines == [refreshed_by(1.0)]


def test_cache_ttl_serves_the_collection_until_it_is_that_old() -> None:
    clock = SteppingClock()
    scraper, tracker = scraper_of(("a",), clock, cache_ttl=60.0)
    first = scraper.collect(30.0)
    clock.sleep(59)
    cached = scraper.collect(clock.now() + 30)
    clock.sleep(1)
    fresh = scraper.collect(clock.now() + 30)
    assert (first.cached, cached.cached, fresh.cached) == (False, True, False)
    assert cached.results == first.results
    assert tracker.made["a"].deadlines == [refreshed_by(30.0), refreshed_by(90.0)]


def test_a_pool_not_done_by_the_deadline_serves_what_was_known_and_fails_nothing() -> None:
    clock = SteppingClock()
    release = threading.Event()
    scraper, tracker = scraper_of(("hangs", "ok"), clock)
    scraper.collect(deadline=10.0)
    known = tracker.made["hangs"].latest()

    def hangs(tracked: FakeTracked, deadline: float) -> PoolResult:
        release.wait(RELEASE_TIMEOUT)
        return PoolResult(tracked.pool, 1.0, error_code=TIMEOUT)

    tracker.made["hangs"]._behaviour = hangs
    clock.sleep(20)
    try:
        # the point is the deadline: the scrape waits this long for the pool, then answers
        snapshot = scraper.collect(deadline=clock.now() + 0.2)
    finally:
        release.set()
    assert [(r.pool.id, r.error_code) for r in snapshot.results] == [("hangs", None), ("ok", None)]
    assert snapshot.results[0] is known
    assert not snapshot.complete


def test_a_pool_dropped_while_its_collection_runs_is_not_reported() -> None:
    clock = SteppingClock()
    scraper, tracker = scraper_of(("a", "b", "c"), clock)

    def drops_b(tracked: FakeTracked, deadline: float) -> PoolResult:
        scraper.set_pools([pool("a"), pool("c")])
        return PoolResult(tracked.pool, 0.1)

    tracker.made["a"]._behaviour = drops_b
    snapshot = scraper.collect(deadline=10.0)
    assert [r.pool.id for r in snapshot.results] == ["a", "c"]
    assert tracker.made["b"].dropped
    assert not tracker.made["a"].dropped
    assert [p.id for p in scraper.pools] == ["a", "c"]


def test_pools_kept_across_set_pools_keep_their_tracked_pool() -> None:
    clock = SteppingClock()
    scraper, tracker = scraper_of(("a", "b"), clock)
    first_a = tracker.made["a"]
    renamed = Pool("a", "renamed", "eu-west-1", "default", None, (), 60, 1000)
    scraper.set_pools([renamed, pool("c")])
    assert tracker.made["a"] is first_a
    assert first_a.pool.name == "renamed"
    assert tracker.made["b"].dropped
    assert [p.id for p in scraper.pools] == ["a", "c"]
