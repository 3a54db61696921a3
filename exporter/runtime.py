"""Wiring: config -> clients -> scraper -> collector -> registry, and swapping it on reload.

A reload builds the new scraper beside the old one and switches over only when the new
configuration loaded cleanly; clients of unchanged credential sets, pool histories (so
counters stay monotonic) and rate-limit buckets carry over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, disable_created_metrics

from exporter import __version__
from exporter.attempts import AttemptGate
from exporter.aws import ClientFactory, ClientKey, ClientSettings
from exporter.collector import ImportJobsCollector
from exporter.config import Config, ConfigError, Pool
from exporter.discovery import PoolDiscovery
from exporter.metrics import ExporterMetrics
from exporter.ratelimit import BucketRegistry
from exporter.scraper import Scraper
from exporter.webconfig import WebConfig

log = logging.getLogger("exporter.runtime")

MAX_READ_TIMEOUT = 10.0

# Counters' *_created series only add noise for an exporter that lives as long as its pod.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Runtime:
    def __init__(
        self,
        load_config: Callable[[], Config],
        load_web_config: Callable[[], WebConfig] = WebConfig,
    ) -> None:
        self._load_config = load_config
        self._load_web_config = load_web_config
        self.web_config = WebConfig()
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        self._config: Config | None = None
        self._scraper: Scraper | None = None
        self._gate: AttemptGate | None = None
        self._factory: ClientFactory | None = None
        self._discovery: PoolDiscovery | None = None
        self.registry.register(
            ImportJobsCollector(
                current_scraper=self.scraper_for,
                default_timeout=lambda: self.config.scrape.timeout,
                cache_ttl=lambda: self.config.scrape.cache_ttl,
            )
        )
        # After the collector: a scrape's own API calls and errors show in the same answer.
        self.metrics = ExporterMetrics(self.registry, __version__)

    @property
    def ready(self) -> bool:
        return self._scraper is not None

    @property
    def config(self) -> Config:
        if self._config is None:
            raise RuntimeError("no configuration loaded yet")
        return self._config

    @property
    def scraper(self) -> Scraper:
        if self._scraper is None:
            raise RuntimeError("no configuration loaded yet")
        return self._scraper

    @property
    def discovery(self) -> PoolDiscovery | None:
        return self._discovery

    def scraper_for(self, deadline: float) -> Scraper:
        """The scraper to use now; right after start, waits (up to the deadline) for the
        first discovery round so the first scrape does not answer with no pools."""
        discovery = self._discovery
        if discovery is not None:
            discovery.wait_for_first_round(deadline - time.monotonic())
        return self.scraper

    def known_pool(self, pool_id: str) -> Pool | None:
        return next((pool for pool in self.scraper.pools if pool.id == pool_id), None)

    def reload(self) -> bool:
        """Load the configuration again; on failure keep serving the old one."""
        try:
            config = self._load_config()
            web_config = self._load_web_config()
        except ConfigError as error:
            self.metrics.reload_success.set(0)
            log.error(
                "configuration reload failed; keeping the previous configuration",
                extra={"fields": {"problems": "; ".join(error.problems)}},
            )
            return False
        self.web_config = web_config
        self.apply(config)
        return True

    def apply(self, config: Config) -> None:
        with self._lock:
            previous_factory, previous_discovery = self._factory, self._discovery
            gate = self._gate_for(config)
            factory = ClientFactory(config.credentials, _client_settings(config), observer=gate)
            if previous_factory is not None:
                factory.keep_clients_from(previous_factory)
            self._config, self._factory, self._gate = config, factory, gate
            kept = previous_discovery.pools() if previous_discovery is not None else ()
            self._use_pools(config, kept)
            self._discovery = None
            if config.discovery:
                self._discovery = PoolDiscovery(
                    config, factory, self.metrics, on_change=self._discovered
                )
        if previous_discovery is not None:
            previous_discovery.stop()
        if self._discovery is not None:
            self._discovery.start()
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(time.time())
        log.info(
            "configuration loaded",
            extra={
                "fields": {"pools": len(config.pools), "credential_sets": len(config.credentials)}
            },
        )

    def close(self) -> None:
        if self._discovery is not None:
            self._discovery.stop()
        if self._scraper is not None:
            self._scraper.close()

    def _discovered(self, pools: tuple[Pool, ...]) -> None:
        with self._lock:
            if self._config is not None:
                self._use_pools(self._config, pools)

    def _use_pools(self, config: Config, discovered: tuple[Pool, ...]) -> None:
        """Static pools, then discovered ones (a static entry wins for the same id); a new
        scraper only when the set changed, keeping every pool's history."""
        static_ids = {pool.id for pool in config.pools}
        pools = config.pools + tuple(pool for pool in discovered if pool.id not in static_ids)
        previous = self._scraper
        if (
            previous is not None
            and previous.pools == pools
            and previous.settings_match(config.scrape, self._factory)
        ):
            return
        factory = self._factory_or_fail()
        for pool in pools:
            # built now, not inside the first scrape where every worker would wait for it
            factory.client(ClientKey(pool.credentials, pool.region, pool.endpoint_url))
        self._scraper = Scraper(
            pools,
            config.scrape,
            factory,
            self.metrics,
            histories=previous.histories if previous is not None else None,
        )
        if previous is not None:
            previous.close()

    def _factory_or_fail(self) -> ClientFactory:
        if self._factory is None:
            raise RuntimeError("no clients yet")
        return self._factory

    def _gate_for(self, config: Config) -> AttemptGate:
        """One gate for the life of the process: the clients' hooks point at it, so clients
        survive reloads; a reload only changes its rates."""
        rates = (config.scrape.requests_per_second, config.scrape.pool_requests_per_second)
        if self._gate is None:
            self._gate = AttemptGate(
                self.metrics,
                account_buckets=BucketRegistry(rates[0]),
                pool_buckets=BucketRegistry(rates[1]),
            )
        else:
            self._gate.set_rates(*rates)
        return self._gate


def _client_settings(config: Config) -> ClientSettings:
    return ClientSettings(
        max_pool_connections=max(10, config.scrape.max_concurrency),
        read_timeout=min(MAX_READ_TIMEOUT, config.scrape.timeout),
        sts_region=config.defaults.region or "us-east-1",
    )
