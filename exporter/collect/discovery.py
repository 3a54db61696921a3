"""Finding pools with ListUserPools and DescribeUserPool, in the background, on an interval.

ListUserPools and DescribeUserPool share a smaller quota than ListUserImportJobs, so discovery
never runs on the scrape path: a background thread refreshes each entry on its own interval,
describes a pool again only when ListUserPools says it was modified, and keeps the last good
list when a refresh fails. Paging is bounded (a repeated token is a `PaginationLoop`, and no
account lists more than MAX_LISTED_POOLS pools), and every call ends by its own deadline.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from exporter.cognito.clients import ClientFactory, ClientKey, error_code
from exporter.cognito.jobs import PagingError
from exporter.collect.attempts import CallScope, calling_for, failure_counted_by_attempt
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import TokenBucket
from exporter.config.model import Config, Discovery, Pool
from exporter.config.schema import is_pool_id
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

DISCOVERY_REQUESTS_PER_SECOND = 5.0
DISCOVERY_CALL_SECONDS = 30.0
PAGE_SIZE = 60
# Cognito's default quota is 1,000 pools per account and region; this leaves room for
# raised quotas while a token that never ends is still caught.
MAX_LISTED_POOLS = 100_000
MAX_PAGES = -(-MAX_LISTED_POOLS // PAGE_SIZE)
MAX_NAME_LENGTH = 128
_FAR_FUTURE = float("inf")


@dataclass(frozen=True)
class _Described:
    modified: float | None
    tags: dict[str, str]


class PoolDiscovery:
    def __init__(
        self,
        config: Config,
        clients: ClientFactory,
        metrics: ExporterMetrics,
        on_change: Callable[[PoolDiscovery, tuple[Pool, ...]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._entries = config.discovery
        self._clients = clients
        self._metrics = metrics
        self._on_change = on_change
        self._clock = clock
        self._bucket = TokenBucket(DISCOVERY_REQUESTS_PER_SECOND)
        self._scope = CallScope("", None, 0.0)
        self._found: dict[int, tuple[Pool, ...]] = {}
        self._described: dict[tuple[int, str], _Described] = {}
        self._due = dict.fromkeys(range(len(self._entries)), 0.0)
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

    def refresh(self, everything: bool = False) -> None:
        """One round: each entry whose refresh is due (every entry with `everything`), then
        the merged list published. The background thread's work; tests call it directly."""
        now = self._clock()
        refreshed = False
        for index, when in self._due.items():
            if everything or when <= now:
                self._refresh(index)
                self._due[index] = now + self._entries[index].refresh_interval
                refreshed = True
        if refreshed:
            self._publish()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._first_round.set()
            next_due = min(self._due.values(), default=_FAR_FUTURE)
            self._stop.wait(max(0.1, next_due - self._clock()))

    def _publish(self) -> None:
        by_region: dict[str, list[int]] = {}
        for index, entry in enumerate(self._entries):
            by_region.setdefault(entry.region, []).append(index)
        for region, indexes in by_region.items():
            self._metrics.discovery_pools.labels(region=region).set(
                sum(len(self._found.get(index, ())) for index in indexes)
            )
        self._on_change(self, self.pools())

    def _refresh(self, index: int) -> None:
        entry = self._entries[index]
        try:
            found = tuple(self._matching_pools(index, entry))
        except Exception as error:  # a failed refresh keeps the last good list
            code = error_code(error)
            if not failure_counted_by_attempt(self._scope):
                self._metrics.api_errors.labels(user_pool_id="", error_code=code).inc()
            self._metrics.discovery_success.labels(region=entry.region).set(0)
            log.warning(
                "pool discovery failed; keeping the last list",
                extra={
                    "fields": {
                        "region": entry.region,
                        "error_code": code,
                        "error": safe_error_text(error),
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
            pool_id = summary.get("Id")
            name = summary.get("Name")
            name = name[:MAX_NAME_LENGTH] if isinstance(name, str) else ""
            if not isinstance(pool_id, str) or not is_pool_id(pool_id) or pool_id in entry.exclude:
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

    def _call(self, method: Callable[..., dict[str, Any]], **request: Any) -> dict[str, Any]:
        """One call at discovery's own pace, ended by its deadline whatever the peer does."""
        self._bucket.acquire(_FAR_FUTURE)
        self._scope = CallScope("", None, self._clock() + DISCOVERY_CALL_SECONDS)
        with calling_for(self._scope):
            answer = method(**request)
        if not isinstance(answer, dict):
            raise PagingError("InvalidResponse", "the answer is not an object")
        return answer

    def _listed_pools(self, client: Any) -> Iterable[dict[str, Any]]:
        token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            request: dict[str, Any] = {"MaxResults": PAGE_SIZE}
            if token:
                request["NextToken"] = token
            answer = self._call(client.list_user_pools, **request)
            pools = answer.get("UserPools", [])
            if not isinstance(pools, list):
                raise PagingError("InvalidResponse", "UserPools is not a list")
            yield from (summary for summary in pools if isinstance(summary, dict))
            token = answer.get("NextToken")
            if not token:
                return
            if not isinstance(token, str):
                raise PagingError("InvalidResponse", "NextToken is not a string")
            if token in seen_tokens:
                raise PagingError("PaginationLoop", "ListUserPools repeated a pagination token")
            seen_tokens.add(token)
        raise PagingError("MaxPagesExceeded", f"more than {MAX_LISTED_POOLS:,} user pools listed")

    def _describe(
        self, index: int, client: Any, pool_id: str, summary: dict[str, Any]
    ) -> _Described:
        modified = summary.get("LastModifiedDate")
        cached = self._described.get((index, pool_id))
        if cached is not None and modified is not None and cached.modified == modified:
            return cached
        pool = self._call(client.describe_user_pool, UserPoolId=pool_id).get("UserPool")
        tags = pool.get("UserPoolTags") if isinstance(pool, dict) else None
        described = _Described(
            modified=modified,
            tags={str(key): str(value) for key, value in tags.items()}
            if isinstance(tags, dict)
            else {},
        )
        self._described[(index, pool_id)] = described
        return described
