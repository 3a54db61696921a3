"""The fleet benchmark's world: many pools in one account-region, most holding one page of old
jobs, some full (1,000 jobs), a few busy with imports, and idle pools where a job is created
during the run.

Jobs are history, not live: an activity thread moves them along at set moments through the
model (a job created, started, importing users step by step, finished) and records each pool's
truth after every change, so what the exporter serves can be checked against what the pool
held when it was refreshed. Times are wall-clock (`time.time()`), the exporter's clock too.
"""

from __future__ import annotations

import gc
import heapq
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.world import FINISHED_MIX, REGION, add_history_job
from exporter.demo.model import PoolCounts
from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from exporter.demo.wire import TARGET_PREFIX, Reply

ACCOUNT_ID = "111122223333"
FULL_JOBS = 1000
SMALL_JOBS = (1, 40)
HISTORY_AGE_DAYS = 3
# seconds (uncompressed) between two changes of an active job, and how many steps each phase lasts
STEP_SECONDS = 30.0
CREATED_STEPS = (1, 2)
IMPORT_STEPS = (3, 10)
IDLE_STEPS = (1, 6)
USERS_A_STEP = (200, 800)
FAILED_SHARE = 0.1
ACTIVE_STATUSES = frozenset({"Created", "Pending", "InProgress", "Stopping"})
READ_TARGETS = frozenset(
    f"{TARGET_PREFIX}{operation}" for operation in ("ListUserImportJobs", "DescribeUserImportJob")
)

Versions = dict[str, list[tuple[float, PoolCounts]]]


@dataclass(frozen=True)
class FleetSpec:
    """How many pools of each kind: the first `full_pools` are full; busy pools are spread
    over full and small ones; new-job pools are small, idle ones at the end of the list."""

    pools: int
    full_pools: int
    busy_pools: int
    new_job_pools: int
    seed: int = 1

    def __post_init__(self) -> None:
        idle_small = self.pools - self.full_pools - self.busy_pools
        if (
            self.pools < 1
            or min(self.full_pools, self.busy_pools, self.new_job_pools) < 0
            or (self.new_job_pools > idle_small)
        ):
            raise ValueError("the fleet needs pools for every kind asked for")

    def pool_ids(self) -> list[str]:
        return [f"{REGION}_Fleet{index:05d}" for index in range(self.pools)]

    def full_ids(self) -> list[str]:
        return self.pool_ids()[: self.full_pools]

    def busy_ids(self) -> list[str]:
        """A quarter of them among the full pools (where there are any), the rest small."""
        ids = self.pool_ids()
        in_full = min(self.full_pools, self.busy_pools // 4)
        return ids[:in_full] + ids[self.full_pools : self.full_pools + self.busy_pools - in_full]

    def new_job_ids(self) -> list[str]:
        return self.pool_ids()[self.pools - self.new_job_pools :]

    def kind_of(self, pool_id: str) -> str:
        kinds = [
            kind
            for kind, ids in (
                ("full", self.full_ids()),
                ("busy", self.busy_ids()),
                ("new-job", self.new_job_ids()),
            )
            if pool_id in ids
        ]
        return " ".join(kinds) or "small"

    def jobs_in(self, pool_id: str) -> int:
        if pool_id in self.full_ids():
            return FULL_JOBS
        return random.Random(f"{self.seed}/{pool_id}/size").randint(*SMALL_JOBS)


@dataclass
class Story:
    """One pool's imports: a job created, started, importing in steps, finished; a busy pool
    starts another after a while, an idle one stops after its first."""

    pool_id: str
    busy: bool
    draw: random.Random
    job_id: str | None = None
    status: str = "idle"
    steps_left: int = 0
    made: int = 0
    users: dict[str, int] = field(default_factory=dict)

    def step(self, model: SimulatedCognito, now: float) -> bool:
        """Move one step at `now`; whether the story goes on."""
        if self.steps_left > 0:
            self.steps_left -= 1
            if self.status == "InProgress":
                self._import_some(model)
            return True
        if self.status in ("idle", "Succeeded", "Failed"):
            if self.status != "idle" and not self.busy:
                return False
            self._create(model, now)
        elif self.status == "Created":
            self._move(model, "Pending", 0)
        elif self.status == "Pending":
            self._move(model, "InProgress", self.draw.randint(*IMPORT_STEPS))
        else:
            failed = self.draw.random() < FAILED_SHARE
            self._move(model, "Failed" if failed else "Succeeded", self.draw.randint(*IDLE_STEPS))
        return True

    def start_importing(self, model: SimulatedCognito, created: float) -> None:
        """A job already importing when the run starts."""
        self._create(model, created)
        model.set_job(self.pool_id, self._job(), status="InProgress", started=created + 30)
        self.status, self.steps_left = "InProgress", self.draw.randint(*IMPORT_STEPS)

    def _create(self, model: SimulatedCognito, now: float) -> None:
        self.made += 1
        name = f"fleet-import-{self.made:03d}"
        self.job_id = model.add_job(self.pool_id, name=name, status="Created", created=now)
        self.users = {"imported": 0, "skipped": 0, "failed": 0}
        self.status, self.steps_left = "Created", self.draw.randint(*CREATED_STEPS) - 1

    def _move(self, model: SimulatedCognito, status: str, steps: int) -> None:
        model.set_job(self.pool_id, self._job(), status=status)
        self.status, self.steps_left = status, steps

    def _import_some(self, model: SimulatedCognito) -> None:
        self.users["imported"] += self.draw.randint(*USERS_A_STEP)
        self.users["skipped"] += self.draw.randint(0, 5)
        self.users["failed"] += self.draw.randint(0, 2)
        model.set_job(self.pool_id, self._job(), **self.users)

    def _job(self) -> str:
        if self.job_id is None:
            raise RuntimeError("the story has no job yet")
        return self.job_id


class ReadCallsCognito(SimulatedCognito):
    """The simulated service, also keeping the arrival time of every ListUserImportJobs and
    DescribeUserImportJob call (the calls the account's budget is spent on)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed)
        self._arrivals_lock = threading.Lock()
        self._read_arrivals: list[float] = []

    def respond(
        self, target: str | None, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Reply:
        if target in READ_TARGETS:
            with self._arrivals_lock:
                self._read_arrivals.append(self.clock())
        return super().respond(target, body, headers)

    def read_arrivals(self, start: int) -> list[float]:
        with self._arrivals_lock:
            return self._read_arrivals[start:]


@dataclass(frozen=True)
class NewJob:
    pool_id: str
    created: float


class FleetSimulator:
    """The fleet served over HTTP, and its activity: built in a child process
    (`bench.processes.Child`) and driven by commands."""

    def __init__(self, spec: FleetSpec, latency: float, scale: float) -> None:
        self._spec = spec
        self._scale = scale
        self._model = ReadCallsCognito(spec.seed)
        self._model.faults.trailing_token = True  # as the service answers: 21 calls a full pool
        self._lock = threading.Lock()
        self._versions: Versions = {}
        self._stories: dict[str, Story] = {}
        self._new_jobs: list[NewJob] = []
        self._stopping = threading.Event()
        self._activity: threading.Thread | None = None
        gc.disable()
        try:
            self._populate()
        finally:
            gc.freeze()
            gc.enable()
        self._model.faults.latency = latency
        self._server = SimulatorServer(self._model)
        self._url = self._server.start()

    def url(self) -> str:
        return self._url

    def read_arrivals(self, start: int = 0) -> list[float]:
        return self._model.read_arrivals(start)

    def list_calls_by_pool(self) -> dict[str, int]:
        return self._model.pool_call_counts()

    def start_activity(self, new_job_at: Sequence[float]) -> None:
        """Busy pools step from now on, each at its own phase; the idle pools of the new-job
        kind get their job at the wall times given, one each, and step on from there."""
        now = time.time()
        step = STEP_SECONDS / self._scale
        queue = [
            (now + step * index / max(1, len(self._spec.busy_ids())), pool_id)
            for index, pool_id in enumerate(self._spec.busy_ids())
        ]
        queue += list(zip(new_job_at, self._spec.new_job_ids(), strict=False))
        heapq.heapify(queue)
        self._activity = threading.Thread(
            target=self._run_activity, args=(queue, step), name="fleet-activity", daemon=True
        )
        self._activity.start()

    def stop_activity(self) -> None:
        self._stopping.set()
        if self._activity is not None:
            self._activity.join()

    def step_all(self) -> None:
        """Every story one step now (runs that step by scrape, not by the clock)."""
        now = time.time()
        for pool_id in [*self._spec.busy_ids(), *self._spec.new_job_ids()]:
            self._step(pool_id, now)

    def versions(self) -> Versions:
        with self._lock:
            return {pool_id: list(history) for pool_id, history in self._versions.items()}

    def truth(self) -> dict[str, PoolCounts]:
        return {pool_id: self._model.counts(pool_id) for pool_id in self._spec.pool_ids()}

    def new_jobs(self) -> list[NewJob]:
        with self._lock:
            return list(self._new_jobs)

    def close(self) -> None:
        self.stop_activity()
        self._server.stop()

    def _populate(self) -> None:
        now = time.time()
        history_end = now - HISTORY_AGE_DAYS * 86400
        busy = set(self._spec.busy_ids())
        for pool_id in self._spec.pool_ids():
            draw = random.Random(f"{self._spec.seed}/{pool_id}")
            self._model.add_pool(pool_id, f"fleet {pool_id}", spawning=False)
            jobs = self._spec.jobs_in(pool_id)
            for index in range(jobs):
                created = history_end - (jobs - index) * 600.0
                status = draw.choice(FINISHED_MIX)
                add_history_job(self._model, pool_id, f"old-{index:05d}", status, created, draw)
            story = Story(pool_id, busy=pool_id in busy, draw=draw)
            if story.busy:
                story.start_importing(self._model, now - 10 * STEP_SECONDS)
            self._stories[pool_id] = story
            self._versions[pool_id] = [(0.0, self._model.counts(pool_id))]

    def _run_activity(self, queue: list[tuple[float, str]], step: float) -> None:
        while queue and not self._stopping.is_set():
            at, pool_id = queue[0]
            if self._stopping.wait(max(0.0, at - time.time())):
                return
            heapq.heappop(queue)
            if self._step(pool_id, time.time()):
                heapq.heappush(queue, (at + step, pool_id))

    def _step(self, pool_id: str, now: float) -> bool:
        story = self._stories[pool_id]
        was_idle = story.status == "idle"
        going_on = story.step(self._model, now)
        counts = self._model.counts(pool_id)
        with self._lock:
            self._versions[pool_id].append((time.time(), counts))
            if was_idle and not story.busy:
                self._new_jobs.append(NewJob(pool_id, now))
        return going_on


def has_active_job(counts: PoolCounts) -> bool:
    return any(counts.statuses.get(status, 0) for status in ACTIVE_STATUSES)
