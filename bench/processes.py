"""The benchmark's child processes and what each measures.

The simulator, the exporter, the sequential baseline and the CPU-per-page comparison each run
in a fresh interpreter (multiprocessing "spawn"), so CPU time and RSS belong to the side being
measured alone; each side imports what it needs only once started (boto3 never loads in the
exporter's process). The parent drives them over a pipe: a command is a method name and its
arguments, the answer is the method's result or the child's traceback.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import resource
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.world import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    WorldSpec,
    counts_of,
    populate,
    truth,
)
from exporter.demo.model import PoolCounts

STOP = "stop"
STOP_GRACE_SECONDS = 10.0
PAGE_SIZE = 60


class ChildError(Exception):
    """A command failed inside a child process; the message is the child's traceback."""


class Child:
    """A service object built and driven in its own spawned process."""

    def __init__(self, name: str, factory: Callable[..., object], *args: object) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child_end, factory, args), name=f"bench-{name}", daemon=True
        )
        self._process.start()
        child_end.close()
        self._answer()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def ask(self, command: str, *args: object) -> Any:
        self._connection.send((command, args))
        return self._answer()

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(ChildError, EOFError, OSError):
                self.ask(STOP)
        self._process.join(STOP_GRACE_SECONDS)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(STOP_GRACE_SECONDS)
        self._connection.close()

    def _answer(self) -> Any:
        status, value = self._connection.recv()
        if status == "error":
            raise ChildError(value)
        return value


def _serve(connection: Connection, factory: Callable[..., object], args: tuple[Any, ...]) -> None:
    try:
        service = factory(*args)
    except Exception:
        connection.send(("error", traceback.format_exc()))
        return
    connection.send(("ok", None))
    while True:
        command, arguments = connection.recv()
        try:
            if command == STOP:
                close = getattr(service, "close", None)
                if close is not None:
                    close()
                connection.send(("ok", None))
                return
            connection.send(("ok", getattr(service, command)(*arguments)))
        except Exception:
            connection.send(("error", traceback.format_exc()))


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_mb()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# ----- the simulator -----


@dataclass(frozen=True)
class CallCounts:
    """ListUserImportJobs calls the simulator answered since its counters were reset."""

    total: int
    by_pool: dict[str, int]


class SimulatorService:
    """The simulated pools, served over HTTP. The world is built once and never changes, so
    it is frozen out of the garbage collector: a full collection over a million jobs would
    stall every request for a second and bunch their arrival times."""

    def __init__(self, spec: WorldSpec) -> None:
        from exporter.demo.server import SimulatorServer
        from exporter.demo.service import SimulatedCognito

        self._spec = spec
        self._model = SimulatedCognito(seed=spec.seed)
        started = time.perf_counter()
        gc.disable()
        try:
            populate(self._model, spec)
        finally:
            gc.freeze()
            gc.enable()
        self._populate_seconds = time.perf_counter() - started
        self._server = SimulatorServer(self._model)
        self._url = self._server.start()

    def url(self) -> str:
        return self._url

    def populate_seconds(self) -> float:
        return self._populate_seconds

    def set_latency(self, seconds: float) -> None:
        self._model.faults.latency = seconds

    def reset_calls(self) -> None:
        self._model.reset_calls()

    def list_calls(self) -> CallCounts:
        return CallCounts(
            total=self._model.call_counts().get("ListUserImportJobs", 0),
            by_pool=self._model.pool_call_counts(),
        )

    def list_call_times(self) -> list[float]:
        return self._model.list_call_times()

    def truth(self) -> dict[str, PoolCounts]:
        return {pool_id: truth(self._model, pool_id) for pool_id in self._spec.pool_ids()}

    def close(self) -> None:
        self._server.stop()


# ----- the exporter -----


@dataclass(frozen=True)
class ExporterSettings:
    concurrency: int
    requests_per_second: float
    pool_requests_per_second: float
    timeout: float


@dataclass(frozen=True)
class PoolMeasure:
    success: bool
    error_code: str | None
    counts: PoolCounts | None
    pages: int
    full: bool


@dataclass(frozen=True)
class ScrapeMeasure:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    rss_mb: float
    cached: bool
    complete: bool
    pools: dict[str, PoolMeasure]


def exporter_config_text(endpoint_url: str, pool_ids: Sequence[str], s: ExporterSettings) -> str:
    pools = "\n".join(f"  - {{id: {pool_id}}}" for pool_id in pool_ids)
    return f"""
defaults:
  endpoint_url: {endpoint_url}
  credentials: bench
  page_size: {PAGE_SIZE}
credentials:
  bench: {{access_key_id: {ACCESS_KEY_ID}, secret_access_key: {SECRET_ACCESS_KEY},
          account_id: "111122223333"}}
scrape:
  timeout: {s.timeout}
  max_concurrency: {s.concurrency}
  requests_per_second: {s.requests_per_second}
  pool_requests_per_second: {s.pool_requests_per_second}
  full_resync_interval: 1h
  cache_ttl: 0
pools:
{pools}
"""


class ExporterService:
    """The real exporter wiring (config -> Runtime -> Scraper), scraped on command."""

    def __init__(self, endpoint_url: str, pool_ids: Sequence[str], s: ExporterSettings) -> None:
        from exporter.app import Runtime

        self._endpoint_url = endpoint_url
        self._pool_ids = list(pool_ids)
        self._settings = s
        config = self._config(s)
        self._runtime = Runtime(lambda: config)
        self._runtime.apply(config)

    def reconfigure(self, s: ExporterSettings) -> None:
        self._settings = s
        self._runtime.apply(self._config(s))

    def scrape(self) -> ScrapeMeasure:
        wall_started, cpu_started = time.perf_counter(), time.process_time()
        snapshot = self._runtime.scraper.collect(deadline=time.monotonic() + self._settings.timeout)
        wall = time.perf_counter() - wall_started
        cpu = time.process_time() - cpu_started
        pools = {}
        for result in snapshot.results:
            outcome = result.outcome
            pools[result.pool.id] = PoolMeasure(
                success=result.success,
                error_code=result.error_code,
                counts=None
                if outcome is None
                else counts_of(outcome.statuses, outcome.users_total),
                pages=0 if outcome is None else outcome.pages,
                full=outcome is not None and outcome.full,
            )
        return ScrapeMeasure(
            wall_seconds=wall,
            cpu_seconds=cpu,
            peak_rss_mb=peak_rss_mb(),
            rss_mb=current_rss_mb(),
            cached=snapshot.cached,
            complete=snapshot.complete,
            pools=pools,
        )

    def close(self) -> None:
        self._runtime.close()

    def _config(self, s: ExporterSettings) -> Any:
        from exporter.config.load import load_text

        return load_text(exporter_config_text(self._endpoint_url, self._pool_ids, s), "bench")


# ----- the sequential baseline -----


@dataclass(frozen=True)
class SequentialMeasure:
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    counts: dict[str, PoolCounts]


class SequentialService:
    def run(self, endpoint_url: str, pool_ids: Sequence[str]) -> SequentialMeasure:
        from bench.sequential import scrape_sequentially

        wall_started, cpu_started = time.perf_counter(), time.process_time()
        counts = scrape_sequentially(endpoint_url, REGION, pool_ids)
        return SequentialMeasure(
            wall_seconds=time.perf_counter() - wall_started,
            cpu_seconds=time.process_time() - cpu_started,
            peak_rss_mb=peak_rss_mb(),
            counts=counts,
        )


# ----- CPU per page, side by side -----


@dataclass(frozen=True)
class PageCost:
    cpu_ms: float
    wall_ms: float


@dataclass(frozen=True)
class CpuComparison:
    pages_each: int
    jobs_per_page: int
    costs: dict[str, PageCost]


class CpuPerPageService:
    """Times full pages through a default boto3 client and through the exporter's client
    (as ClientFactory builds it, with the attempt gate the runtime installs), in alternating
    blocks so that drift in machine load hits every contender alike."""

    WARM_UP = 20
    BLOCK = 25

    def run(self, endpoint_url: str, pool_id: str, pages: int) -> CpuComparison:
        contenders = self._contenders(endpoint_url, pool_id)
        jobs_per_page = {name: call() for name, call in contenders.items()}
        if len(set(jobs_per_page.values())) != 1:
            raise RuntimeError(f"the contenders saw different pages: {jobs_per_page}")
        for call in contenders.values():
            for _ in range(self.WARM_UP):
                call()
        cpu = dict.fromkeys(contenders, 0.0)
        wall = dict.fromkeys(contenders, 0.0)
        done = 0
        while done < pages:
            block = min(self.BLOCK, pages - done)
            for name, call in contenders.items():
                wall_started, cpu_started = time.perf_counter(), time.process_time()
                for _ in range(block):
                    call()
                cpu[name] += time.process_time() - cpu_started
                wall[name] += time.perf_counter() - wall_started
            done += block
        return CpuComparison(
            pages_each=pages,
            jobs_per_page=next(iter(jobs_per_page.values())),
            costs={
                name: PageCost(cpu_ms=cpu[name] * 1000 / pages, wall_ms=wall[name] * 1000 / pages)
                for name in contenders
            },
        )

    def _contenders(self, endpoint_url: str, pool_id: str) -> dict[str, Callable[[], int]]:
        import boto3
        from prometheus_client import CollectorRegistry

        from exporter import __version__
        from exporter.cognito.clients import ClientFactory, ClientKey, ClientSettings
        from exporter.cognito.jobs import fetch_page
        from exporter.collect.attempts import AccountRegion, AttemptGate, CallScope, calling_for
        from exporter.collect.metrics import ExporterMetrics
        from exporter.collect.ratelimit import BucketRegistry
        from exporter.config.schema import CredentialSet

        plain = boto3.client(
            "cognito-idp",
            region_name=REGION,
            endpoint_url=endpoint_url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        credentials = CredentialSet.model_validate(
            {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_ACCESS_KEY}
        )
        gate = AttemptGate(
            ExporterMetrics(CollectorRegistry(), __version__),
            account_buckets=BucketRegistry(10_000),
            pool_buckets=BucketRegistry(10_000),
        )
        factory = ClientFactory({"bench": credentials}, ClientSettings(), observer=gate)
        client = factory.client(ClientKey("bench", REGION, endpoint_url))
        scope = CallScope(pool_id, AccountRegion.of(None, "bench", REGION), deadline=float("inf"))

        def boto3_default() -> int:
            return len(
                plain.list_user_import_jobs(UserPoolId=pool_id, MaxResults=PAGE_SIZE)[
                    "UserImportJobs"
                ]
            )

        def exporter_client() -> int:
            with calling_for(scope):
                answer = client.list_user_import_jobs(UserPoolId=pool_id, MaxResults=PAGE_SIZE)
            return len(answer["UserImportJobs"])

        def exporter_page() -> int:
            with calling_for(scope):
                return len(fetch_page(client, pool_id, PAGE_SIZE, None).jobs)

        return {
            "boto3 default client": boto3_default,
            "exporter client": exporter_client,
            "exporter client + parse_page": exporter_page,
        }
