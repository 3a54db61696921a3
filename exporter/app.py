"""The Runtime: builds the object graph a configuration implies (clients, scraper,
collector, discovery), swaps it on reload and stops it; and `serve()`, which puts it online.

Whatever a configuration implies (its web config, every client its pools and discovery
entries need, the discovery itself) is built beside the running one first; only when all
of it was built does the runtime switch, in one step that cannot fail. A reload that fails
anywhere changes nothing, says why in one line and sets `config_last_reload_successful 0`.
Clients of unchanged credential sets, pool histories (so counters stay monotonic), rate-limit
buckets and collections in flight carry over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

from exporter import __version__
from exporter.cognito.clients import ClientFactory, ClientSettings, client_keys, profile_problems
from exporter.collect.attempts import AttemptGate
from exporter.collect.budgets import DEFAULT_QUOTA, Budgets
from exporter.collect.collector import ImportJobsCollector
from exporter.collect.discovery import PoolDiscovery
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.pool import PoolTracker
from exporter.collect.ratelimit import BucketRegistry
from exporter.collect.reasons_reader import ReadLimits, ReasonsReader
from exporter.collect.schedule import RefreshPlanner
from exporter.collect.scraper import Scraper
from exporter.collect.storage import HistoryStore
from exporter.config.model import Config, Pool
from exporter.config.problems import ConfigError
from exporter.config.schema import Scrape
from exporter.redaction import SECRETS
from exporter.web.certificate_expiry import CertificateExpiryCollector
from exporter.web.routes import ExporterApp, ReloadOutcome
from exporter.web.serve import ServerSettings, run
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

MAX_READ_TIMEOUT = 10.0

# Counters' *_created series only add noise for an exporter that lives as long as its pod.
disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class _Generation:
    """Everything one configuration implies, built before any of it is used."""

    config: Config
    web_config: WebConfig
    clients: ClientFactory
    discovery: PoolDiscovery | None


class Runtime:
    def __init__(
        self,
        load_config: Callable[[], Config],
        load_web_config: Callable[[], WebConfig] = WebConfig,
        storage_path: str = "",
        reasons_limits: ReadLimits | None = None,
    ) -> None:
        self._storage_path = storage_path
        self._load_config = load_config
        self._load_web_config = load_web_config
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._reload_wanted = threading.Event()
        self._reloader: threading.Thread | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self._generation: _Generation | None = None
        self._scraper: Scraper | None = None
        self._tracker: PoolTracker | None = None
        self.registry.register(
            ImportJobsCollector(
                current_scraper=lambda: self.scraper,
                default_timeout=lambda: self.config.scrape.timeout,
                cache_ttl=lambda: self.config.scrape.cache_ttl,
            )
        )
        # The exporter's own metrics, served alone on /exporter-metrics (no collection) and
        # after the collector on /metrics, so a scrape's own API calls and errors show in the
        # same answer.
        self.exporter_registry = CollectorRegistry(auto_describe=True)
        self.metrics = ExporterMetrics(self.exporter_registry, __version__)
        # process_* (CPU, memory, descriptors, start time), as every exporter serves them
        ProcessCollector(registry=self.exporter_registry)
        self.exporter_registry.register(
            CertificateExpiryCollector(lambda: self.web_config.certificate_not_after)
        )
        # a registry is a collector of its own metrics
        self.registry.register(self.exporter_registry)
        # One gate for the life of the process: the clients' hooks point at it, so clients
        # survive reloads; a reload only changes its rates.
        self._gate = AttemptGate(
            self.metrics,
            account_buckets=BucketRegistry(Scrape().account_rate(DEFAULT_QUOTA)),
            pool_buckets=BucketRegistry(Scrape().pool_requests_per_second),
        )
        self._budgets = Budgets(self._gate, self.metrics)
        # reads finished jobs' logs for pools with reasons on; its thread starts with the first
        self.reasons_reader = ReasonsReader(reasons_limits, metrics=self.metrics)
        self._planner = RefreshPlanner(self._gate.account_rate, self.metrics)
        self._store = (
            HistoryStore.open(storage_path, self._budgets.known_account) if storage_path else None
        )

    @property
    def ready(self) -> bool:
        return self._generation is not None

    @property
    def config(self) -> Config:
        return self._current().config

    @property
    def web_config(self) -> WebConfig:
        generation = self._generation
        return generation.web_config.latest() if generation is not None else WebConfig()

    @property
    def scraper(self) -> Scraper:
        if self._scraper is None:
            raise RuntimeError("no configuration loaded yet")
        return self._scraper

    @property
    def budgets(self) -> Budgets:
        return self._budgets

    @property
    def discovery(self) -> PoolDiscovery | None:
        generation = self._generation
        return generation.discovery if generation is not None else None

    def known_pool(self, pool_id: str) -> Pool | None:
        return next((pool for pool in self.scraper.pools if pool.id == pool_id), None)

    def start(self) -> None:
        """Load and apply the configuration files; ConfigError with every problem if not."""
        with self._reload_lock:
            self._apply(self._load_config(), self._load_web_config())

    def apply(self, config: Config, web_config: WebConfig | None = None) -> None:
        """Build all `config` implies, then switch to it; ConfigError, and nothing changed,
        when any of it cannot be built."""
        with self._reload_lock:
            self._apply(config, web_config or WebConfig())

    def reload(self) -> ReloadOutcome:
        """Load the configuration files again and apply them; on any failure keep serving
        the previous configuration, entirely. Reloads take turns, reading the files included,
        so the last one to start is the one in force."""
        try:
            with self._reload_lock:
                self._apply(self._load_config(), self._load_web_config())
        except ConfigError as error:
            return self._refused("; ".join(error.problems))
        except Exception as error:  # nothing a file holds may end the process
            # the type only: the text of an error nobody foresaw could quote the file
            return self._refused(f"unexpected {type(error).__name__}")
        return ReloadOutcome(True, "configuration reloaded")

    def request_reload(self) -> None:
        """Reload soon, in the background (SIGHUP). Requests that arrive while a reload runs
        make one more reload after it, however many there are."""
        with self._lock:
            self._reload_wanted.set()
            if self._reloader is None:
                self._reloader = threading.Thread(
                    target=self._reload_when_wanted, name="reload", daemon=True
                )
                self._reloader.start()

    def close(self) -> None:
        self._budgets.stop()
        self.reasons_reader.stop()
        discovery = self.discovery
        if discovery is not None:
            discovery.stop()
        if self._scraper is not None:
            self._scraper.close()

    def _current(self) -> _Generation:
        generation = self._generation
        if generation is None:
            raise RuntimeError("no configuration loaded yet")
        return generation

    def _reload_when_wanted(self) -> None:
        while True:
            self._reload_wanted.wait()
            self._reload_wanted.clear()
            self.reload()

    def _refused(self, reason: str) -> ReloadOutcome:
        self.metrics.reload_success.set(0)
        self.metrics.reloads.labels(outcome="failure").inc()
        log.error(
            "configuration reload failed; keeping the previous configuration",
            extra={"fields": {"problems": reason}},
        )
        return ReloadOutcome(False, f"configuration not reloaded: {reason}")

    def _apply(self, config: Config, web_config: WebConfig) -> None:
        self._switch(self._build(config, web_config))

    def _build(self, config: Config, web_config: WebConfig) -> _Generation:
        SECRETS.add(config.secrets())
        previous = self._generation
        problems = profile_problems(config.credentials)
        if previous is not None and (previous.web_config.ssl_context is None) != (
            web_config.ssl_context is None
        ):
            problems.append(
                "tls_server_config: turning TLS on or off needs a restart; "
                "the listening socket keeps the protocol it started with"
            )
        if problems:
            raise ConfigError(problems)
        clients = ClientFactory(config.credentials, _client_settings(config), observer=self._gate)
        if previous is not None:
            clients.keep_clients_from(previous.clients)
        # built now, not inside the first scrape where every worker would wait for it
        problems = clients.build(client_keys(config))
        if problems:
            raise ConfigError(problems)
        discovery = None
        if config.discovery:
            discovery = PoolDiscovery(
                config,
                clients,
                self.metrics,
                on_change=self._discovered,
                found_before=(
                    previous.discovery.found_by_entry()
                    if previous is not None and previous.discovery is not None
                    else None
                ),
            )
        return _Generation(config, web_config, clients, discovery)

    def _switch(self, generation: _Generation) -> None:
        config = generation.config
        previous = self._generation
        kept = previous.discovery.pools() if previous and previous.discovery else ()
        scrape = config.scrape
        self._budgets.configure(config, generation.clients)
        self._gate.attempt_timeout = _client_settings(config).read_timeout
        with self._lock:
            self._generation = generation
            pools = _merged(config.pools, kept)
            if self._tracker is None or self._scraper is None:
                self._tracker = PoolTracker(
                    scrape,
                    generation.clients,
                    self.metrics,
                    account_key=self._budgets.account_key,
                    on_not_enabled=self._not_enabled,
                    full_interval=self._planner.full_resync_interval,
                    store=self._store,
                    reasons_reader=self.reasons_reader,
                )
                self._scraper = Scraper(pools, scrape, self._tracker, planner=self._planner)
            else:
                self._tracker.configure(scrape, generation.clients)
                self._scraper.configure(scrape, pools)
        discovery = generation.discovery
        self.scraper.wait_for_pools_with(
            discovery.wait_for_first_round if discovery is not None else None
        )
        if previous is not None and previous.discovery is not None:
            previous.discovery.stop()
        if discovery is not None:
            discovery.start()
        # the budgets before the first scrape: GetCallerIdentity and GetProvisionedLimit
        if previous is None:
            self._budgets.start()
        else:
            self._budgets.refresh(reread_quotas=False)
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(time.time())
        self.metrics.reloads.labels(outcome="success").inc()
        log.info(
            "configuration loaded",
            extra={
                "fields": {"pools": len(config.pools), "credential_sets": len(config.credentials)}
            },
        )

    def _not_enabled(self, pool: Pool) -> bool:
        """A pool answered OperationNotEnabled: discovery stops collecting it if it found it
        (True); a static pool keeps reporting the error."""
        discovery = self.discovery
        return discovery is not None and discovery.not_enabled(pool)

    def _discovered(self, discovery: PoolDiscovery, pools: tuple[Pool, ...]) -> None:
        with self._lock:
            generation = self._generation
            if generation is None or generation.discovery is not discovery:
                return  # a discovery of a configuration no longer in force
            if self._scraper is not None:
                self._scraper.set_pools(_merged(generation.config.pools, pools))


def _merged(static: tuple[Pool, ...], discovered: Iterable[Pool]) -> tuple[Pool, ...]:
    """Static pools, then discovered ones; a static entry wins for the same id."""
    static_ids = {pool.id for pool in static}
    return static + tuple(pool for pool in discovered if pool.id not in static_ids)


def _client_settings(config: Config) -> ClientSettings:
    return ClientSettings(
        max_pool_connections=max(10, config.scrape.max_concurrency),
        # one answer may take at most half the scrape's budget, so a slow pool leaves time
        read_timeout=min(MAX_READ_TIMEOUT, config.scrape.timeout / 2),
        sts_region=config.defaults.region or "us-east-1",
    )


def serve(
    runtime: Runtime,
    listen_address: str,
    timeout_offset: float,
    on_started: Callable[[], None] | None = None,
    reload_asked: threading.Event | None = None,
) -> int:
    """Serve a started runtime until SIGTERM or SIGINT. A reload asked for before the server
    could take signals (`reload_asked`, set by an early SIGHUP) is made once it serves."""

    def started() -> None:
        if reload_asked is not None and reload_asked.is_set():
            runtime.request_reload()
        if on_started is not None:
            on_started()

    app = ExporterApp(runtime, timeout_offset=timeout_offset)
    workers = max(16, runtime.config.scrape.max_concurrency)
    settings = ServerSettings(listen_address, worker_threads=workers)
    try:
        run(
            app,
            settings,
            on_reload=runtime.request_reload,
            budget=app.budget,
            web_config=lambda: runtime.web_config,
            on_started=started,
        )
    except OSError as error:
        log.error(
            "cannot serve", extra={"fields": {"address": listen_address, "error": error.strerror}}
        )
        return 1
    finally:
        runtime.close()
    return 0
