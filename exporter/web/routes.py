"""The routes: a WSGI app serving /metrics, /probe, /sd, the status page, health and reload."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.cognito.clients import service_regions
from exporter.collect.collector import RenderReserve, families, scrape_deadline
from exporter.collect.scraper import Scraper
from exporter.config.model import Config, Pool
from exporter.config.schema import is_pool_id
from exporter.web.statuspage import landing_page

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

SCRAPE_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
# When the request arrived (time.monotonic), set by the server before it queues for a worker:
# a scrape's budget starts then, not when a worker picks it up.
ARRIVED = "exporter.arrived"
# When its answer is due (time.monotonic), computed once by the server from ARRIVED and the
# scrape timeout header.
DEADLINE = "exporter.deadline"
# Paths answered at once in the event loop: they read a flag, never wait on a collection.
ANSWERED_AT_ONCE = ("/-/healthy", "/-/ready")
RELOAD_PATH = "/-/reload"
READ_METHODS = ("GET", "HEAD")
RELOAD_METHODS = ("POST", "PUT")


def scrape_budget(header: str | None, configured_timeout: float, offset: float) -> float:
    """Seconds this scrape may take: the configured timeout, or less if Prometheus says so.
    The header is a single number; sent several times (its values joined by commas, as RFC
    9110 5.3 combines field lines) the smallest valid one counts."""
    announced = []
    for member in (header or "").split(","):
        try:
            value = float(member)
        except ValueError:
            continue
        if value == value and value > 0:
            announced.append(value)
    if not announced:
        return configured_timeout
    return min(configured_timeout, max(min(announced) - offset, 0.0))


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    message: str


class RuntimeView(Protocol):
    """What the routes need of the running exporter (the app's Runtime)."""

    registry: CollectorRegistry
    exporter_registry: CollectorRegistry

    @property
    def ready(self) -> bool: ...

    @property
    def config(self) -> Config: ...

    @property
    def scraper(self) -> Scraper: ...

    def known_pool(self, pool_id: str) -> Pool | None: ...

    def reload(self) -> ReloadOutcome: ...


class ExporterApp:
    def __init__(
        self,
        runtime: RuntimeView,
        timeout_offset: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._timeout_offset = timeout_offset
        self._clock = clock
        self._metrics_app = make_wsgi_app(runtime.registry)
        self._exporter_metrics_app = make_wsgi_app(runtime.exporter_registry)
        self._render_reserve = RenderReserve()
        self._routes: dict[str, tuple[tuple[str, ...], WsgiApp]] = {
            "/metrics": (READ_METHODS, self._metrics),
            "/exporter-metrics": (READ_METHODS, self._exporter_metrics),
            "/": (READ_METHODS, self._landing),
            "/-/healthy": (READ_METHODS, self._healthy),
            "/-/ready": (READ_METHODS, self._ready),
            RELOAD_PATH: (RELOAD_METHODS, self._reload),
            "/probe": (READ_METHODS, self._probe),
            "/sd": (READ_METHODS, self._service_discovery),
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        route = self._routes.get(environ.get("PATH_INFO") or "/")
        if route is None:
            return _text(start_response, "404 Not Found", "not found\n")
        methods, handler = route
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in methods:
            return _text(
                start_response,
                "405 Method Not Allowed",
                f"use {' or '.join(methods)}\n",
                [("Allow", ", ".join(methods))],
            )
        body = handler(environ, start_response)
        return [b""] if method == "HEAD" else body

    def budget(self, scrape_timeout_header: str | None) -> float:
        """Seconds a request may take from its arrival."""
        return scrape_budget(
            scrape_timeout_header, self._runtime.config.scrape.timeout, self._timeout_offset
        )

    def _deadline(self, environ: Environ) -> tuple[float, float]:
        """(deadline, arrival) of this request's scrape: as the server computed them, or from
        now for a request that did not come through it."""
        arrived = environ.get(ARRIVED)
        if not isinstance(arrived, float):
            arrived = self._clock()
        deadline = environ.get(DEADLINE)
        if not isinstance(deadline, float):
            deadline = arrived + self.budget(environ.get(SCRAPE_TIMEOUT_HEADER))
        return deadline, arrived

    def _metrics(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._runtime.ready:
            return _text(start_response, "503 Service Unavailable", "no configuration loaded\n")
        deadline, arrived = self._deadline(environ)
        collect_by = self._render_reserve.collection_deadline(deadline, arrived)
        with scrape_deadline(collect_by, arrived) as timing:
            body: Iterable[bytes] = self._metrics_app(
                dict(environ, REQUEST_METHOD="GET"), start_response
            )
        if timing.collected is not None:
            self._render_reserve.observe(self._clock() - timing.collected)
        return body

    def _exporter_metrics(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """The exporter's own metrics (API calls, errors, budgets, discovery, reloads), with no
        collection: for replicas whose pools are scraped on /probe."""
        body: Iterable[bytes] = self._exporter_metrics_app(
            dict(environ, REQUEST_METHOD="GET"), start_response
        )
        return body

    def _probe(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._runtime.ready:
            return _text(start_response, "503 Service Unavailable", "no configuration loaded\n")
        targets = parse_qs(environ.get("QUERY_STRING", "")).get("target", [])
        if len(targets) != 1:
            return _text(start_response, "400 Bad Request", "give exactly one target=<pool id>\n")
        target = targets[0]
        if not is_pool_id(target):
            return _text(start_response, "400 Bad Request", "target is not a user pool id\n")
        config = self._runtime.config
        pool = self._runtime.known_pool(target)
        listed = pool is not None
        if pool is None and config.probe.allow_unlisted and config.probe.credentials:
            pool = config.pool_for(target, credentials=config.probe.credentials)
            # each region needs a client of its own: only regions that exist get one
            if pool.region not in service_regions() | config.regions():
                return _text(
                    start_response,
                    "404 Not Found",
                    f"{pool.region or 'no region'} is not a region Cognito user pools are in\n",
                )
        if pool is None:
            return _text(
                start_response,
                "404 Not Found",
                f"user pool {target} is neither configured nor discovered\n",
            )
        deadline, _ = self._deadline(environ)
        result = self._runtime.scraper.collect_one(pool, deadline, listed=listed)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families((result,))))
        body: Iterable[bytes] = make_wsgi_app(registry)(
            dict(environ, REQUEST_METHOD="GET"), start_response
        )
        return body

    def _service_discovery(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        pools = self._runtime.scraper.pools if self._runtime.ready else ()
        body = json.dumps(http_sd_targets(pools), indent=1).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _healthy(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return _text(start_response, "200 OK", "Healthy\n")

    def _ready(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._runtime.ready:
            return _text(start_response, "200 OK", "Ready\n")
        return _text(start_response, "503 Service Unavailable", "not ready\n")

    def _reload(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        outcome = self._runtime.reload()
        status = "200 OK" if outcome.ok else "500 Internal Server Error"
        return _text(start_response, status, outcome.message + "\n")

    def _landing(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        runtime = self._runtime
        page = landing_page(
            runtime.scraper.pools if runtime.ready else (),
            runtime.scraper.last_snapshot if runtime.ready else None,
        )
        start_response(
            "200 OK",
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
        )
        return [page]


class _Families(Collector):
    def __init__(self, built: list[Metric]) -> None:
        self._built = built

    def collect(self) -> Iterable[Metric]:
        return self._built


def http_sd_targets(pools: Iterable[Pool]) -> list[dict[str, Any]]:
    """Prometheus HTTP service discovery: one target per pool, to be scraped via /probe."""
    return [
        {
            "targets": [pool.id],
            "labels": {
                "user_pool_id": pool.id,
                "user_pool_name": pool.name,
                "region": pool.region,
                **dict(pool.labels),
            },
        }
        for pool in pools
    ]


def _text(
    start_response: StartResponse,
    status: str,
    text: str,
    headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = text.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
    )
    return [body]
