"""The embedded demo: the real exporter against a simulated Cognito endpoint in the same process.

Nothing here is canned: a few pools with readable names hold a history of import jobs, new
jobs keep arriving and move through their lifecycle on a compressed clock, and the exporter
reads them through real boto3 over real HTTP, with the normal config and collector.
"""

from __future__ import annotations

import random
import sys
import threading
import time

from exporter.app import Runtime, serve
from exporter.config.load import load_text
from exporter.config.model import Config
from exporter.config.problems import ConfigError
from exporter.demo.lifecycle import Lifecycle
from exporter.demo.model import DEFAULT_ACCOUNT_ID
from exporter.demo.server import SimulatorServer
from exporter.demo.service import SimulatedCognito
from exporter.web.serve import ALL_INTERFACES, parse_listen_address
from exporter.web.webconfig import load_web_config

DEMO_POOLS = (
    ("eu-west-1_Cust0mers1", "customers", 140),
    ("eu-west-1_Partn3rs22", "partners", 24),
    ("us-east-1_Staff00333", "staff", 6),
    ("ap-southeast-2_Legacy4", "legacy-migration", 0),
)
# Configured but absent from the endpoint, like a pool deleted without updating the config:
# the demo shows one failing pool beside exact ones.
RETIRED_POOL = ("eu-west-1_Retired99", "retired")
# pools whose finished jobs' logs are read for the reasons users were skipped or failed
REASONS_POOLS = frozenset({"customers", "partners"})
DEMO_LIFECYCLE = Lifecycle(
    expire_after=45.0,
    pending_seconds=3.0,
    stopping_seconds=4.0,
    users_per_second=120.0,
    min_users=200,
    max_users=3000,
    operator_start_after=6.0,
    abandon_probability=0.2,
    failure_probability=0.2,
    new_job_every=12.0,
)
_HISTORY_OUTCOMES = ("Succeeded",) * 14 + ("Failed", "Failed", "Stopped", "Expired")


def demo_world(now: float, seed: int = 7) -> SimulatedCognito:
    """Pools with a past (finished jobs, one pool with several pages of them) and a present
    (jobs created, running and stopping right now)."""
    model = SimulatedCognito(seed=seed, lifecycle=DEMO_LIFECYCLE)
    draw = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    for pool_id, name, history in DEMO_POOLS:
        model.add_pool(pool_id, name, tags={"app": "demo", "team": "identity"})
        for index in range(history, 0, -1):
            _add_finished_job(model, pool_id, f"{name}-sync-{index:03d}", now - index * 3600, draw)
    customers, partners, staff, _ = (pool_id for pool_id, _, _ in DEMO_POOLS)
    model.add_job(
        customers,
        name="customers-sync-live",
        status="InProgress",
        created=now - 20,
        started=now - 15,
        total_users=2500,
        live=True,
    )
    model.add_job(partners, name="partners-backfill", status="Created", created=now - 2, live=True)
    model.add_job(
        partners,
        name="partners-delta",
        status="Pending",
        created=now - 4,
        started=now - 1,
        total_users=900,
        live=True,
    )
    model.add_job(
        staff,
        name="staff-cleanup",
        status="Stopping",
        created=now - 30,
        started=now - 25,
        imported=150,
        total_users=1200,
        live=True,
    )
    return model


def _add_finished_job(
    model: SimulatedCognito, pool_id: str, name: str, created: float, draw: random.Random
) -> None:
    status = draw.choice(_HISTORY_OUTCOMES)
    if status == "Expired":
        model.add_job(pool_id, name=name, status=status, created=created)
        return
    total = draw.randint(200, 5000)
    failed = draw.randint(0, total // 50) if status != "Succeeded" else draw.randint(0, 3)
    skipped = draw.randint(0, total // 40)
    imported = total - failed - skipped if status == "Succeeded" else (total - failed) // 2
    model.add_job(
        pool_id,
        name=name,
        status=status,
        created=created,
        started=created + 60,
        completed=created + 60 + total / 50,
        imported=imported,
        skipped=skipped,
        failed=failed,
        completion_message={
            "Succeeded": "Import job completed",
            "Failed": "Too many users failed validation",
            "Stopped": "Stopped by operator",
        }[status],
    )


def configured_demo_pools() -> dict[str, str]:
    """Every pool the demo's config lists, id -> name."""
    return {pool_id: name for pool_id, name, _ in DEMO_POOLS} | dict([RETIRED_POOL])


def demo_config(endpoint_url: str) -> Config:
    pools = "\n".join(
        f"  - {{id: {pool_id}, name: {name}, labels: {{environment: demo}}"
        f"{', reasons: true' if name in REASONS_POOLS else ''}}}"
        for pool_id, name in configured_demo_pools().items()
    )
    return load_text(
        f"""
defaults:
  endpoint_url: {endpoint_url}
  logs_endpoint_url: {endpoint_url}
  credentials: demo
credentials:
  demo: {{access_key_id: DEMOACCESSKEY, secret_access_key: demo-not-a-secret,
         account_id: "{DEFAULT_ACCOUNT_ID}"}}
scrape:
  timeout: 10s
pools:
{pools}
""",
        source="demo",
    )


def run_demo(
    listen_address: str,
    timeout_offset: float,
    reload_asked: threading.Event | None = None,
    web_config_path: str = "",
) -> int:
    """Serve the demo behind the web config in `web_config_path` (TLS, basic auth, headers),
    read and refused as at a normal start; 1 with its problems on stderr when it is refused."""
    simulator = SimulatorServer(demo_world(time.time()), tick_interval=0.5)
    endpoint = simulator.start()
    config = demo_config(endpoint)
    host, port = parse_listen_address(listen_address)
    shown_host = "localhost" if host in ALL_INTERFACES else host

    def announce() -> None:
        scheme = "https" if runtime.web_config.ssl_context is not None else "http"
        print(
            f"Demo: simulated Cognito user pools at {endpoint} "
            f"({len(DEMO_POOLS)} pools, jobs moving through their lifecycle; "
            f"{RETIRED_POOL[0]} is configured but gone, to show a failing pool).\n"
            f"Metrics:     {scheme}://{shown_host}:{port}/metrics\n"
            f"Status page: {scheme}://{shown_host}:{port}/\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )

    runtime = Runtime(lambda: config, lambda: load_web_config(web_config_path or None))
    try:
        try:
            runtime.start()
        except ConfigError as error:
            for problem in error.problems:
                print(problem, file=sys.stderr)
            return 1
        return serve(
            runtime, listen_address, timeout_offset, on_started=announce, reload_asked=reload_asked
        )
    finally:
        simulator.stop()
        print("Demo stopped.", file=sys.stderr, flush=True)
