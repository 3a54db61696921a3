"""Finding pools with ListUserPools and DescribeUserPool, in the background, on an interval.

ListUserPools and DescribeUserPool share a smaller quota than ListUserImportJobs, so discovery
never runs on the scrape path: a background thread refreshes each entry on its own interval,
describes a pool again only when ListUserPools says it was modified, and keeps the last good
list when a refresh fails. Paging is bounded (`exporter.cognito.pools`), and every call ends by
its own deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.cognito.clients import ClientFactory, ClientKey
from exporter.cognito.errors import error_code
from exporter.cognito.pools import PoolSummary, listed_pools, pool_tags
from exporter.collect.attempts import CallScope, calling_for, failure_counted_by_attempt
from exporter.collect.metrics import ExporterMetrics
from exporter.collect.ratelimit import TokenBucket
from exporter.config.model import Config, Discovery, Pool
from exporter.redaction import safe_error_text

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

log = logging.getLogger(__name__)

DISCOVERY_REQUESTS_PER_SECOND = 5.0
DISCOVERY_CALL_SECONDS = 30.0
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
        found_before: Mapping[Discovery, tuple[Pool, ...]] | None = None,
    ) -> None:
        """`found_before`: what an earlier configuration's discovery found for each entry; an
        entry this one keeps unchanged starts from it, so a reload whose first round fails
        keeps the pools (and their stored histories) instead of dropping them."""
        self._config = config
        self._entries = config.discovery
        self._clients = clients
        self._metrics = metrics
        self._on_change = on_change
        self._clock = clock
        self._bucket = TokenBucket(DISCOVERY_REQUESTS_PER_SECOND)
        self._scope = CallScope("", None, 0.0)
        before = found_before or {}
        self._found: dict[int, tuple[Pool, ...]] = {
            index: before[entry] for index, entry in enumerate(self._entries) if entry in before
        }
        # pools whose region answered OperationNotEnabled (a replica region): not collected
        self._not_enabled: set[tuple[str, str]] = set()
        self._publishing = threading.Lock()
        self._described: dict[tuple[int, str], _Described] = {}
        self._due = dict.fromkeys(range(len(self._entries)), 0.0)
        self._first_round = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def found_by_entry(self) -> dict[Discovery, tuple[Pool, ...]]:
        found = dict(self._found)
        return {self._entries[index]: pools for index, pools in found.items()}

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
                if (pool.id, pool.region) not in self._not_enabled:
                    merged.setdefault(pool.id, pool)
        return tuple(merged.values())

    def not_enabled(self, pool: Pool) -> bool:
        """`pool`'s region answered OperationNotEnabled: stop collecting it there, for as
        long as this configuration is in force. False when this discovery did not find it
        (a configured pool, reported as failing)."""
        if not any(pool in found for found in self._found.values()):
            return False
        key = (pool.id, pool.region)
        with self._publishing:
            if key in self._not_enabled:
                return True
            self._not_enabled.add(key)
        log.info(
            "a discovered pool cannot be read in this region (a replica region); "
            "no longer collected",
            extra={"fields": {"user_pool_id": pool.id, "region": pool.region}},
        )
        with self._publishing:
            self._publish()
        return True

    def refresh(self, *, everything: bool = False) -> None:
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
            with self._publishing:
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
            found = {pool.id for index in indexes for pool in self._found.get(index, ())}
            not_enabled = {pool_id for pool_id in found if (pool_id, region) in self._not_enabled}
            pools = self._metrics.discovery_pools
            pools.labels(region=region, state="collected").set(len(found - not_enabled))
            pools.labels(region=region, state="not_enabled").set(len(not_enabled))
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

    def _matching_pools(self, index: int, entry: Discovery) -> list[Pool]:
        client = self._clients.client(ClientKey.of(entry))
        pattern = entry.name_pattern
        wanted_tags = dict(entry.tags)
        matching = []
        listed = set()
        for summary in listed_pools(client, self._call):
            listed.add(summary.pool_id)
            if summary.pool_id in entry.exclude:
                continue
            if pattern is not None and not pattern.search(summary.name):
                continue
            if wanted_tags:
                tags = self._tags(index, client, summary)
                if any(tags.get(key) != value for key, value in wanted_tags.items()):
                    continue
            matching.append(
                self._config.pool_for(
                    summary.pool_id,
                    name=summary.name or summary.pool_id,
                    region=entry.region,
                    credentials=entry.credentials,
                    endpoint_url=entry.endpoint_url,
                )
            )
        # the tags of pools no longer listed (deleted) are not needed again
        for key in [key for key in self._described if key[0] == index and key[1] not in listed]:
            del self._described[key]
        return matching

    def _call(self, method: Callable[..., Any], **request: Any) -> Any:
        """One call at discovery's own pace, ended by its deadline whatever the peer does."""
        self._bucket.acquire(_FAR_FUTURE)
        self._scope = CallScope("", None, self._clock() + DISCOVERY_CALL_SECONDS)
        with calling_for(self._scope):
            return method(**request)

    def _tags(
        self, index: int, client: CognitoIdentityProviderClient, summary: PoolSummary
    ) -> dict[str, str]:
        """The pool's tags, described again only when the pool was modified since."""
        cached = self._described.get((index, summary.pool_id))
        if (
            cached is not None
            and summary.modified is not None
            and cached.modified == summary.modified
        ):
            return cached.tags
        tags = pool_tags(client, self._call, summary.pool_id)
        self._described[(index, summary.pool_id)] = _Described(summary.modified, tags)
        return tags
