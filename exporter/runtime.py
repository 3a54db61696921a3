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

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.attempts import AttemptGate
from exporter.aws import ClientFactory, ClientSettings
from exporter.collector import ImportJobsCollector
from exporter.config import Config, ConfigError
from exporter.metrics import ExporterMetrics
from exporter.ratelimit import BucketRegistry
from exporter.scraper import Scraper

log = logging.getLogger("exporter.runtime")

MAX_READ_TIMEOUT = 10.0


class Runtime:
    def __init__(self, load_config: Callable[[], Config]) -> None:
        self._load_config = load_config
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        self._config: Config | None = None
        self._scraper: Scraper | None = None
        self._gate: AttemptGate | None = None
        self._factory: ClientFactory | None = None
        self.registry.register(
            ImportJobsCollector(
                current_scraper=lambda: self.scraper,
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

    def reload(self) -> bool:
        """Load the configuration again; on failure keep serving the old one."""
        try:
            config = self._load_config()
        except ConfigError as error:
            self.metrics.reload_success.set(0)
            log.error(
                "configuration reload failed; keeping the previous configuration",
                extra={"fields": {"problems": "; ".join(error.problems)}},
            )
            return False
        self.apply(config)
        return True

    def apply(self, config: Config) -> None:
        with self._lock:
            previous_scraper, previous_factory = self._scraper, self._factory
            gate = self._gate_for(config)
            factory = ClientFactory(config.credentials, _client_settings(config), observer=gate)
            if previous_factory is not None:
                factory.keep_clients_from(previous_factory)
            scraper = Scraper(
                config.pools,
                config.scrape,
                factory,
                self.metrics,
                histories=previous_scraper.histories if previous_scraper is not None else None,
            )
            self._config, self._scraper, self._factory, self._gate = config, scraper, factory, gate
        if previous_scraper is not None:
            previous_scraper.close()
        self.metrics.reload_success.set(1)
        self.metrics.reload_timestamp.set(time.time())
        log.info(
            "configuration loaded",
            extra={
                "fields": {"pools": len(config.pools), "credential_sets": len(config.credentials)}
            },
        )

    def close(self) -> None:
        if self._scraper is not None:
            self._scraper.close()

    def _gate_for(self, config: Config) -> AttemptGate:
        previous = self._config
        if (
            self._gate is not None
            and previous is not None
            and previous.scrape.requests_per_second == config.scrape.requests_per_second
            and previous.scrape.pool_requests_per_second == config.scrape.pool_requests_per_second
        ):
            return self._gate
        return AttemptGate(
            self.metrics,
            account_buckets=BucketRegistry(config.scrape.requests_per_second),
            pool_buckets=BucketRegistry(config.scrape.pool_requests_per_second),
        )


def _client_settings(config: Config) -> ClientSettings:
    return ClientSettings(
        max_pool_connections=max(10, config.scrape.max_concurrency),
        read_timeout=min(MAX_READ_TIMEOUT, config.scrape.timeout),
        sts_region=config.defaults.region or "us-east-1",
    )
