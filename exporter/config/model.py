"""The loaded configuration: frozen objects with every default applied."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.config.schema import (
    CredentialSet,
    Defaults,
    NamePattern,
    ProbeSettings,
    Scrape,
    region_from_pool_id,
)


@dataclass(frozen=True)
class Pool:
    """One user pool to collect, with every default already applied."""

    id: str
    name: str
    region: str
    credentials: str
    endpoint_url: str | None
    labels: tuple[tuple[str, str], ...]
    page_size: int
    max_listed_jobs: int
    # read why users were skipped or failed from finished jobs' logs, at this endpoint
    reasons: bool = False
    logs_endpoint_url: str | None = None


@dataclass(frozen=True)
class Discovery:
    """One discovery entry with the defaults applied."""

    region: str
    credentials: str
    endpoint_url: str | None
    tags: tuple[tuple[str, str], ...]
    name_pattern: NamePattern | None
    exclude: frozenset[str]
    refresh_interval: float


@dataclass(frozen=True)
class Config:
    credentials: Mapping[str, CredentialSet]
    scrape: Scrape
    pools: tuple[Pool, ...]
    defaults: Defaults
    discovery: tuple[Discovery, ...] = ()
    probe: ProbeSettings = field(default_factory=ProbeSettings)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value the configuration holds, to keep them out of any text."""
        values = []
        for credential_set in self.credentials.values():
            for secret in (
                credential_set.secret_access_key,
                credential_set.session_token,
                credential_set.external_id,
            ):
                if secret is not None:
                    values.append(secret.get_secret_value())
        return tuple(values)

    def regions(self) -> frozenset[str]:
        """The regions the file names: its pools', discovery's and the default."""
        named = {pool.region for pool in self.pools} | {d.region for d in self.discovery}
        if self.defaults.region:
            named.add(self.defaults.region)
        return frozenset(named)

    def pool_for(
        self,
        pool_id: str,
        name: str | None = None,
        *,
        region: str | None = None,
        credentials: str | None = None,
        endpoint_url: str | None = None,
    ) -> Pool:
        """A pool not listed in the file, with the defaults applied (discovery, probes)."""
        return pool_with_defaults(
            self.defaults,
            pool_id,
            name=name,
            region=region,
            credentials=credentials,
            endpoint_url=endpoint_url,
        )


def region_for(pool_id: str, region: str | None, defaults: Defaults) -> str | None:
    """The region a pool is read in: its own, the one its id names, or the default."""
    return region or region_from_pool_id(pool_id) or defaults.region


def pool_with_defaults(
    defaults: Defaults,
    pool_id: str,
    *,
    name: str | None = None,
    region: str | None = None,
    credentials: str | None = None,
    endpoint_url: str | None = None,
    labels: tuple[tuple[str, str], ...] = (),
    reasons: bool | None = None,
    logs_endpoint_url: str | None = None,
) -> Pool:
    """A pool with the defaults applied to whatever it does not say."""
    return Pool(
        id=pool_id,
        name=name or pool_id,
        region=region_for(pool_id, region, defaults) or "",
        credentials=credentials or defaults.credentials,
        endpoint_url=endpoint_url or defaults.endpoint_url,
        labels=labels,
        page_size=defaults.page_size,
        max_listed_jobs=defaults.max_jobs,
        reasons=defaults.reasons if reasons is None else reasons,
        logs_endpoint_url=logs_endpoint_url or defaults.logs_endpoint_url,
    )
