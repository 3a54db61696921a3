"""Finding pools with ListUserPools and DescribeUserPool, in the background, on an interval.

ListUserPools and DescribeUserPool share a smaller quota than ListUserImportJobs, so discovery
never runs on the scrape path: a background thread refreshes each entry on its own interval,
describes a pool again only when ListUserPools says it was modified, and keeps the last good
list when a refresh fails.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter.aws import ClientFactory, ClientKey, error_code
from exporter.config import Config, Discovery, Pool
from exporter.metrics import ExporterMetrics
from exporter.ratelimit import TokenBucket

log = logging.getLogger("exporter.discovery")

DISCOVERY_REQUESTS_PER_SECOND = 5.0
_FAR_FUTURE = float("inf")


@dataclass(frozen=True)
class _Described:
    modified: float | None
    name: str
    tags: dict[str, str]


class PoolDiscovery:
    def __init__(
        self,
        config: Config,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        on_change: Callable[[tuple[Pool, ...]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._entries = config.discovery
        self._clients = clients
        self._metrics = metrics
        self._on_change = on_change
        self._clock = clock
        self._bucket = TokenBucket(DISCOVERY_REQUESTS_PER_SECOND)
        self._found: dict[int, tuple[Pool, ...]] = {}
        self._described: dict[tuple[int, str], _Described] = {}
        self._first_round = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait_for_first_round(self, timeout: float) -> bool:
        return self._first_round.wait(max(0.0, timeout))

    def pools(self) -> tuple[Pool, ...]:
        merged: dict[str, Pool] = {}
        for index in sorted(self._found):
            for pool in self._found[index]:
                merged.setdefault(pool.id, pool)
        return tuple(merged.values())

    def refresh_all(self) -> None:
        """One round over every entry; used by the thread and by tests."""
        for index in range(len(self._entries)):
            self._refresh(index)
        self._publish()

    def _run(self) -> None:
        due = dict.fromkeys(range(len(self._entries)), 0.0)
        while not self._stop.is_set():
            now = self._clock()
            refreshed = False
            for index, when in due.items():
                if when <= now:
                    self._refresh(index)
                    due[index] = now + self._entries[index].refresh_interval
                    refreshed = True
            if refreshed:
                self._publish()
            self._first_round.set()
            self._stop.wait(max(0.1, min(due.values(), default=_FAR_FUTURE) - self._clock()))

    def _publish(self) -> None:
        by_region: dict[str, list[int]] = {}
        for index, entry in enumerate(self._entries):
            by_region.setdefault(entry.region, []).append(index)
        for region, indexes in by_region.items():
            self._metrics.discovery_pools.labels(region=region).set(
                sum(len(self._found.get(index, ())) for index in indexes)
            )
        self._on_change(self.pools())

    def _refresh(self, index: int) -> None:
        entry = self._entries[index]
        try:
            found = tuple(self._matching_pools(index, entry))
        except Exception as error:  # a failed refresh keeps the last good list
            self._metrics.discovery_success.labels(region=entry.region).set(0)
            log.warning(
                "pool discovery failed; keeping the last list",
                extra={
                    "fields": {
                        "region": entry.region,
                        "error_code": error_code(error),
                        "pools_kept": len(self._found.get(index, ())),
                    }
                },
            )
            return
        self._metrics.discovery_success.labels(region=entry.region).set(1)
        if found != self._found.get(index):
            log.info(
                "pool discovery found pools",
                extra={"fields": {"region": entry.region, "pools": len(found)}},
            )
        self._found[index] = found

    def _matching_pools(self, index: int, entry: Discovery) -> Iterable[Pool]:
        client = self._clients.client(
            ClientKey(entry.credentials, entry.region, entry.endpoint_url)
        )
        pattern = re.compile(entry.name_pattern) if entry.name_pattern else None
        wanted_tags = dict(entry.tags)
        for summary in self._listed_pools(client):
            pool_id = str(summary.get("Id", ""))
            name = str(summary.get("Name", ""))
            if not pool_id or pool_id in entry.exclude:
                continue
            if pattern is not None and not pattern.search(name):
                continue
            described = self._describe(index, client, pool_id, summary) if wanted_tags else None
            if described is not None and any(
                described.tags.get(key) != value for key, value in wanted_tags.items()
            ):
                continue
            yield self._config.pool_for(
                pool_id,
                name=name or pool_id,
                region=entry.region,
                credentials=entry.credentials,
                endpoint_url=entry.endpoint_url,
            )

    def _listed_pools(self, client: Any) -> Iterable[dict[str, Any]]:
        token: str | None = None
        while True:
            self._bucket.acquire(_FAR_FUTURE)
            request: dict[str, Any] = {"MaxResults": 60}
            if token:
                request["NextToken"] = token
            answer = client.list_user_pools(**request)
            yield from answer.get("UserPools", [])
            token = answer.get("NextToken")
            if not token:
                return

    def _describe(
        self, index: int, client: Any, pool_id: str, summary: dict[str, Any]
    ) -> _Described:
        modified = summary.get("LastModifiedDate")
        cached = self._described.get((index, pool_id))
        if cached is not None and modified is not None and cached.modified == modified:
            return cached
        self._bucket.acquire(_FAR_FUTURE)
        pool = client.describe_user_pool(UserPoolId=pool_id).get("UserPool", {})
        tags = pool.get("UserPoolTags") or {}
        described = _Described(
            modified=modified,
            name=str(pool.get("Name", "")),
            tags={str(key): str(value) for key, value in tags.items()},
        )
        self._described[(index, pool_id)] = described
        return described
