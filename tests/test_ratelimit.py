from __future__ import annotations

import itertools
import threading

import pytest

from exporter.collect.ratelimit import BucketRegistry, DeadlineExceeded, TokenBucket
from tests.clocks import SteppingClock


def departures(bucket: TokenBucket, clock: SteppingClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        bucket.acquire(deadline=1e9)
        times.append(clock.now())
    return times


def most_in_any_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def test_requests_are_spaced_and_no_second_holds_more_than_the_rate() -> None:
    clock = SteppingClock()
    bucket = TokenBucket(20, clock.now, clock.sleep)
    times = departures(bucket, clock, 200)
    assert most_in_any_second(times) == 20
    assert min(later - earlier for earlier, later in itertools.pairwise(times)) >= 0.05 - 1e-9


def test_late_senders_do_not_let_a_window_overfill() -> None:
    clock = SteppingClock()
    bucket = TokenBucket(20, clock.now, clock.sleep)
    times = []
    for index in range(100):
        bucket.acquire(deadline=1e9)
        times.append(clock.now())
        if index % 7 == 0:
            clock.sleep(0.09)  # a request that left the bucket late, as under CPU contention
    assert most_in_any_second(times) <= 20


def test_a_slot_after_the_deadline_is_refused_at_once() -> None:
    clock = SteppingClock()
    bucket = TokenBucket(1, clock.now, clock.sleep)
    bucket.acquire(deadline=10)
    with pytest.raises(DeadlineExceeded):
        bucket.acquire(deadline=0.5)
    assert clock.now() == 0.0


def test_back_off_delays_every_later_caller() -> None:
    clock = SteppingClock()
    bucket = TokenBucket(100, clock.now, clock.sleep)
    bucket.acquire(deadline=10)
    bucket.back_off(2.0)
    bucket.acquire(deadline=10)
    assert clock.now() == pytest.approx(2.0)


def test_threads_share_one_bucket() -> None:
    clock = SteppingClock()
    bucket = TokenBucket(50, clock.now, clock.sleep)
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            bucket.acquire(deadline=1e9)
            with lock:
                times.append(clock.now())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(times) == 100
    assert most_in_any_second(sorted(times)) <= 50


def test_a_registry_lets_idle_buckets_go_past_its_bound_and_keeps_busy_ones() -> None:
    clock = SteppingClock()
    registry = BucketRegistry(5, clock.now, clock.sleep, max_buckets=3)
    first = registry.bucket("a")
    for key in "abc":
        registry.bucket(key).acquire(deadline=1e9)
    registry.bucket("d")  # "a" sent a request this instant: a new bucket would let it send more
    assert len(registry) == 4
    assert registry.bucket("a") is first
    clock.sleep(2)  # every bucket idle for more than its window
    for index in range(1000):
        registry.bucket(f"probed-{index}").acquire(deadline=1e9)
        clock.sleep(0.3)
    assert len(registry) == 4
