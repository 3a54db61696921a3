"""The README's scaling story, run as written: real Prometheus servers, exporter processes and
the simulator over HTTP.

Three replicas split the pools with the README's hashmod example, rendered once per replica:
every pool is scraped through `/probe` by exactly one replica, its numbers are exact, and each
replica calls the API for its own share only. An HA pair (two Prometheus servers scraping one
exporter's `/metrics`) costs two collections per scrape interval without `scrape.cache_ttl`,
two with a TTL shorter than the gap between the servers' scrapes, and one with a TTL of at
least half the interval, whatever the gap; `-s` prints the measured calls per interval.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cognito.jobs import KNOWN_STATUSES
from exporter.demo.service import SimulatedCognito
from tests.exporter_process import RunningExporter, running_exporter
from tests.prometheus_releases import PrometheusRelease
from tests.prometheus_server import Prometheus, running_prometheus_with
from tests.simulated import config_yaml, populate, serving
from tests.tools import wait_until

pytestmark = pytest.mark.slow

Json = dict[str, Any]

README = Path(__file__).resolve().parent.parent / "README.md"
POOLS = tuple(f"eu-west-1_Scale{index:02d}" for index in range(1, 13))
REPLICAS = 3
INTERVAL_SECONDS = 1
AWAIT_SECONDS = 30.0
SCRAPE = {"requests_per_second": 1000}

HA_POOLS = POOLS[:6]
HA_JOB = "cognito-import-exporter"
WINDOW_INTERVALS = 5
# the two servers' scrapes this far apart at least (a fraction of the interval), so that
# neither joins the other's collection while it runs; servers started to find such a pair
MIN_PHASE_GAP = 0.2
PAIR_CANDIDATES = 4
PAIR_ATTEMPTS = 3


def simulated_pools(pool_ids: tuple[str, ...]) -> SimulatedCognito:
    """Pools of 10 to 43 finished jobs (the newest may be active), one page each; nothing
    live, so the truth stays fixed."""
    model = SimulatedCognito(seed=13)
    for seed, pool_id in enumerate(pool_ids):
        populate(model, pool_id, 10 + 3 * seed, seed, active_newest=1)
    return model


def http_post(url: str) -> int:
    request = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        status: int = response.status
        return status


def address_of(exporter: RunningExporter) -> str:
    return exporter.base_url.removeprefix("http://")


# ----- three replicas splitting /probe targets with hashmod -----


def readme_jobs() -> tuple[Json, Json]:
    """The scrape jobs of the README's hashmod example, exactly as the README writes them:
    the /probe job of replica 0, and the job of the replicas' own metrics."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    [example] = [block for block in blocks if "hashmod" in block]
    probe, own = yaml.safe_load(example)["scrape_configs"]
    assert (probe["metrics_path"], own["metrics_path"]) == ("/probe", "/exporter-metrics")
    return probe, own


def own_metrics_job(template: Json, addresses: list[str]) -> Json:
    """The README's job of the replicas' own metrics, pointed at the test's replicas."""
    job = copy.deepcopy(template)
    [targets] = job["static_configs"]
    assert targets["targets"] == [f"cognito-import-exporter-{n}:10209" for n in range(REPLICAS)]
    targets["targets"] = addresses
    job["scrape_interval"] = job["scrape_timeout"] = f"{INTERVAL_SECONDS}s"
    return job


def job_for_replica(template: Json, replica: int, sd_url: str, address: str) -> Json:
    """The README's job as the README says to render it for replica `replica`: its own job
    name, its own `keep` regex and address; the scrape timing shortened for the test."""
    job = copy.deepcopy(template)
    job["job_name"] = probe_job_name(template, replica)
    job["scrape_interval"] = job["scrape_timeout"] = f"{INTERVAL_SECONDS}s"
    [discovery] = job["http_sd_configs"]
    discovery["url"] = sd_url
    relabels: list[Json] = job["relabel_configs"]
    [hashmod] = [rule for rule in relabels if rule.get("action") == "hashmod"]
    [keep] = [rule for rule in relabels if rule.get("action") == "keep"]
    [address_rule] = [rule for rule in relabels if rule.get("target_label") == "__address__"]
    assert (hashmod["modulus"], keep["regex"]) == (REPLICAS, "0")
    assert address_rule["replacement"] == "cognito-import-exporter-0:10209"
    keep["regex"] = str(replica)
    address_rule["replacement"] = address
    return job


def probe_job_name(template: Json, replica: int) -> str:
    name = template["job_name"]
    assert isinstance(name, str)
    assert name.endswith("-0")
    return f"{name.removesuffix('-0')}-{replica}"


def share_of(pool_id: str) -> int:
    """The replica whose job keeps the pool, computed as Prometheus' hashmod does: the low 64
    bits of the MD5 of the pool id (the target's address, from /sd), modulo the replicas."""
    digest = hashlib.md5(pool_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % REPLICAS


@contextmanager
def replicas(workdir: Path, models: list[SimulatedCognito]) -> Iterator[list[RunningExporter]]:
    """One exporter process per model, each with the same pools, against its own simulator
    (so each replica's calls are counted apart)."""
    with ExitStack() as stack:
        running = []
        for replica, model in enumerate(models):
            endpoint = stack.enter_context(serving(model))
            config = workdir / f"replica-{replica}.yaml"
            config.write_text(config_yaml(endpoint, POOLS, scrape=SCRAPE), encoding="utf-8")
            running.append(
                stack.enter_context(running_exporter("--config.file", str(config), workdir=workdir))
            )
        yield running


def test_three_replicas_with_the_readme_hashmod_scrape_every_pool_once_and_exactly(
    prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    models = [simulated_pools(POOLS) for _ in range(REPLICAS)]
    expected_share = {pool_id: share_of(pool_id) for pool_id in POOLS}
    # the pool ids are chosen so that every replica has a share
    assert sorted(set(expected_share.values())) == [0, 1, 2]
    template, own_template = readme_jobs()
    job_names = [probe_job_name(template, replica) for replica in range(REPLICAS)]
    probe_jobs = f'job=~"{"|".join(job_names)}"'
    with replicas(tmp_path, models) as exporters:
        # /sd may be any replica's: they share one config (the README puts a Service there)
        sd_url = f"{exporters[0].base_url}/sd"
        addresses = [address_of(exporter) for exporter in exporters]
        document = {
            "scrape_configs": [
                *(
                    job_for_replica(template, replica, sd_url, address)
                    for replica, address in enumerate(addresses)
                ),
                own_metrics_job(own_template, addresses),
            ]
        }
        own_job = f'job="{own_template["job_name"]}"'
        every_target_up = (
            f"count(up{{{probe_jobs}}} == 1) == {len(POOLS)}"
            f" and on () count(up{{{own_job}}} == 1) == {REPLICAS}"
            f" and on () min(count_over_time(up{{{own_job}}}[1m])) >= 3"
        )
        with running_prometheus_with(
            tmp_path, prometheus_release, document, every_target_up
        ) as server:
            targets = server.get("/api/v1/targets")
            jobs = server.vector("cognito_user_import_jobs")
            users = server.vector("cognito_user_import_users_total")
            calls = [model.pool_call_counts() for model in models]
            reported = {
                series["metric"]["instance"]: float(series["value"][1])
                for series in server.vector(
                    "cognito_user_import_api_requests_total"
                    f'{{{own_job}, operation="ListUserImportJobs"}}'
                )
            }
            scrapes = {
                series["metric"]["user_pool_id"]: int(series["value"][1])
                for series in server.vector(f"count_over_time(up{{{probe_jobs}}}[10m])")
            }
        # a scrape of /metrics collects every pool the replica knows, its share or not
        before = models[0].pool_call_counts()
        exporters[0].scrape()
        after = models[0].pool_call_counts()

    # every pool is a target of exactly the job its hash picks; the others dropped it
    kept = sorted(
        (target["labels"]["user_pool_id"], target["labels"]["job"], target["scrapeUrl"])
        for target in targets["activeTargets"]
        if target["labels"]["job"] in job_names
    )
    assert kept == sorted(
        (
            pool_id,
            job_names[replica],
            f"{exporters[replica].base_url}/probe?target={pool_id}",
        )
        for pool_id, replica in expected_share.items()
    )
    assert len(targets["droppedTargets"]) == (REPLICAS - 1) * len(POOLS)

    # one series per pool and status, from its replica's job, equal to the truth; labelled
    # as the exporter serves it, plus the target's labels
    assert {frozenset(s["metric"]) for s in jobs} == {
        frozenset(
            {"__name__", "job", "instance", "user_pool_id", "status", "user_pool_name", "region"}
        )
    }
    truth = {pool_id: models[expected_share[pool_id]].counts(pool_id) for pool_id in POOLS}
    seen_jobs = sorted(
        (s["metric"]["user_pool_id"], s["metric"]["status"], s["metric"]["job"], s["value"][1])
        for s in jobs
    )
    assert seen_jobs == sorted(
        (pool_id, status, job_names[expected_share[pool_id]], str(count))
        for pool_id in POOLS
        for status in KNOWN_STATUSES
        for count in [truth[pool_id].statuses.get(status, 0)]
    )
    seen_users = sorted(
        (s["metric"]["user_pool_id"], s["metric"]["outcome"], s["metric"]["job"], s["value"][1])
        for s in users
    )
    assert seen_users == sorted(
        (pool_id, outcome, job_names[expected_share[pool_id]], str(total))
        for pool_id in POOLS
        for outcome, total in truth[pool_id].users.items()
    )

    # each replica called the API for its own share only, one call per /probe scrape (a
    # scrape in flight while the counts were read may stand between the two figures)
    for replica, counted in enumerate(calls):
        share = {pool_id for pool_id, owner in expected_share.items() if owner == replica}
        assert set(counted) == share, replica
        for pool_id in share:
            assert abs(counted[pool_id] - scrapes[pool_id]) <= 1, (pool_id, counted, scrapes)
    # the replicas' own metrics were scraped without a collection of their own: what each
    # reported is its /probe calls (scrapes in flight aside)
    for replica, counted in enumerate(calls):
        share_size = len(counted)
        assert 0 <= sum(counted.values()) - reported[addresses[replica]] <= share_size, replica
    # which is why the README says to add no /metrics job on these replicas
    added = {pool_id: after[pool_id] - before.get(pool_id, 0) for pool_id in POOLS}
    assert added == dict.fromkeys(POOLS, 1)


# ----- an HA pair scraping one exporter's /metrics -----


def pair_member(exporter: str, replica: str) -> Json:
    """An HA pair member's config: the same job, told apart by a `replica` external label,
    as HA pairs are (it also moves the server's scrapes within the interval)."""
    interval = f"{INTERVAL_SECONDS}s"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "external_labels": {"replica": replica},
        },
        "scrape_configs": [{"job_name": HA_JOB, "static_configs": [{"targets": [exporter]}]}],
    }


def has_scraped(server: Prometheus) -> bool:
    return bool(server.vector(f'up{{job="{HA_JOB}"}} == 1'))


def scrape_phase(server: Prometheus) -> float:
    """Where in the interval the server scrapes, in seconds from a whole interval."""
    [series] = server.vector(f'timestamp(up{{job="{HA_JOB}"}})')
    return float(series["value"][1]) % INTERVAL_SECONDS


def gap_between(phase: float, other: float) -> float:
    """How far apart two phases are, 0 to half the interval, whichever comes first."""
    offset = (other - phase) % INTERVAL_SECONDS
    return min(offset, INTERVAL_SECONDS - offset)


@contextmanager
def ha_pair(
    workdir: Path, release: PrometheusRelease, exporter: str
) -> Iterator[tuple[Prometheus, Prometheus, float]]:
    """Two Prometheus servers scraping the exporter, and the gap between their scrapes.

    Prometheus places a target's scrapes within the interval by a hash of the target, the host
    name and the external labels: two servers on one host with one config scrape in lockstep
    and share every collection. Servers with other labels are started at once (a server's
    first scrape comes up to 5 s after its start), and the two whose scrapes fall furthest
    apart, at least MIN_PHASE_GAP of the interval, are kept: as servers on two hosts.
    """
    for attempt in range(PAIR_ATTEMPTS):
        with ExitStack() as attempt_stack:
            started: dict[str, tuple[ExitStack, Prometheus]] = {}
            for index in range(PAIR_CANDIDATES):
                label = f"{attempt}-{index}"
                directory = workdir / f"prometheus-{label}"
                directory.mkdir()
                own = attempt_stack.enter_context(ExitStack())
                document = pair_member(exporter, label)
                server = own.enter_context(
                    running_prometheus_with(directory, release, document, None)
                )
                started[label] = (own, server)
            for label, (_, server) in started.items():
                wait_until(
                    functools.partial(has_scraped, server), AWAIT_SECONDS, f"{label} scraped"
                )
            phases = {label: scrape_phase(server) for label, (_, server) in started.items()}
            first, second = max(
                itertools.combinations(phases, 2),
                key=lambda pair: gap_between(phases[pair[0]], phases[pair[1]]),
            )
            gap = gap_between(phases[first], phases[second])
            if gap >= MIN_PHASE_GAP * INTERVAL_SECONDS:
                for label, (own, _) in started.items():
                    if label not in (first, second):
                        own.close()
                yield started[first][1], started[second][1], gap
                return
    raise AssertionError(f"no two of {PAIR_ATTEMPTS} x {PAIR_CANDIDATES} servers scraped apart")


def jobs_by_pool_and_status(server: Prometheus) -> dict[tuple[str, str], str]:
    return {
        (series["metric"]["user_pool_id"], series["metric"]["status"]): series["value"][1]
        for series in server.vector("cognito_user_import_jobs")
    }


def scrape_times(server: Prometheus, after: float) -> list[float]:
    [series] = server.vector(f'up{{job="{HA_JOB}"}}[30s]')
    return [float(at) for at, _ in series["values"] if float(at) > after]


def calls_in_intervals(model: SimulatedCognito, first: Prometheus, intervals: int) -> int:
    """ListUserImportJobs calls over `intervals` whole scrape intervals, from one of the first
    server's scrapes to another, starting after one interval to settle."""
    after = time.time() + INTERVAL_SECONDS
    times: list[float] = []

    def scraped_through() -> bool:
        nonlocal times
        times = scrape_times(first, after)
        return len(times) > intervals

    wait_until(scraped_through, AWAIT_SECONDS, f"{intervals + 1} scrapes", interval=0.2)
    start, end = times[0], times[intervals]
    return sum(1 for at in model.list_call_times() if start <= at < end)


def test_an_ha_pair_costs_one_collection_per_interval_with_cache_ttl_of_half_the_interval(
    prometheus_release: PrometheusRelease, tmp_path: Path
) -> None:
    model = simulated_pools(HA_POOLS)
    config = tmp_path / "config.yaml"
    measured: dict[float, float] = {}
    with serving(model) as endpoint:

        def configure(cache_ttl: float) -> None:
            scrape = {**SCRAPE, "cache_ttl": f"{cache_ttl * 1000:.0f}ms"}
            config.write_text(config_yaml(endpoint, HA_POOLS, scrape=scrape), encoding="utf-8")

        configure(0.0)
        with (
            running_exporter("--config.file", str(config), workdir=tmp_path) as exporter,
            ha_pair(tmp_path, prometheus_release, address_of(exporter)) as (first, second, gap),
        ):
            # no cache; one shorter than the gap between the servers' scrapes; half the
            # interval and more (below the interval, so each server still gets new data)
            expected = {0.0: 2, round(gap / 2, 3): 2, 0.75 * INTERVAL_SECONDS: 1}
            for cache_ttl in expected:
                configure(cache_ttl)
                assert http_post(f"{exporter.base_url}/-/reload") == 200
                calls = calls_in_intervals(model, first, WINDOW_INTERVALS)
                measured[cache_ttl] = calls / WINDOW_INTERVALS
            # both servers hold every pool's numbers, from their own collection or the other's
            served = [jobs_by_pool_and_status(server) for server in (first, second)]

    for cache_ttl, per_interval in measured.items():
        print(
            f"HA pair, {len(HA_POOLS)} pools, {INTERVAL_SECONDS}s scrapes {gap:.3f}s apart, "
            f"cache_ttl {cache_ttl:g}s: {per_interval:g} ListUserImportJobs calls per interval, "
            f"{per_interval / len(HA_POOLS):g} collection(s)"
        )
    # every collection costs one call a pool (one page each)
    assert measured == {
        cache_ttl: collections * len(HA_POOLS) for cache_ttl, collections in expected.items()
    }

    truth = {
        (pool_id, status): str(model.counts(pool_id).statuses.get(status, 0))
        for pool_id in HA_POOLS
        for status in KNOWN_STATUSES
    }
    assert served == [truth, truth]
