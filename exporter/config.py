"""The exporter's configuration: a strict YAML schema, loaded into frozen, typed objects.

`load()` returns a `Config` or raises one `ConfigError` that lists every problem in the file,
each prefixed with its path (`pools[2].credentials: unknown credential set "prdo"`).
Secret values never appear in those messages. The schema's building blocks (`StrictModel`,
`Duration`, the AWS name checks) serve the web config too.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from exporter.configfile import parse_yaml, read_config_text, read_secret
from exporter.validation import ConfigError, describe_validation_errors, format_path, quoted

__all__ = ["ConfigError"]

# The service's own patterns, in ASCII: \w would take any Unicode letter, and `$` a newline.
POOL_ID_PATTERN = re.compile(r"[\w-]+_[0-9a-zA-Z]+", re.ASCII)
POOL_ID_MAX_LENGTH = 55
REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+", re.ASCII)
LABEL_NAME_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*", re.ASCII)
RESERVED_POOL_LABELS = frozenset({"user_pool_id", "user_pool_name", "region"})
DEFAULT_CREDENTIALS = "default"
MAX_DURATION_SECONDS = 366 * 86400.0
MAX_SCRAPE_TIMEOUT_SECONDS = 3600.0
_DURATION_PATTERN = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def is_pool_id(text: str) -> bool:
    """A user pool id as the service accepts it: `<region>_<letters and digits>`, ASCII."""
    return len(text) <= POOL_ID_MAX_LENGTH and POOL_ID_PATTERN.fullmatch(text) is not None


def parse_duration(value: object) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `250ms` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION_PATTERN.fullmatch(value.strip()):
        seconds = sum(
            float(amount) * _UNIT_SECONDS[unit]
            for amount, unit in _DURATION_PART.findall(value.strip())
        )
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(
                f'invalid duration "{value}": use a number of seconds or units ms, s, m, h, d'
            ) from None
    else:
        raise ValueError("expected a duration such as 30s, 5m or a number of seconds")
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds, zero or more")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("a duration must be at most 366d")
    return seconds


def _reject_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _valid_region(value: str | None) -> str | None:
    if value is not None and not REGION_PATTERN.fullmatch(value):
        raise ValueError(f"{quoted(value)} is not an AWS region name (like eu-west-1)")
    return value


def _valid_endpoint(value: str | None) -> str | None:
    if value is None:
        return value
    message = "endpoint_url must be an http:// or https:// URL with a host"
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError(message)
    try:
        parsed = urllib.parse.urlsplit(value)
        port = parsed.port
    except ValueError:
        raise ValueError(f"{message} and a valid port") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(message)
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("endpoint_url must not carry a user name or password")
    if port == 0 or parsed.query or parsed.fragment:
        raise ValueError(f"{message}, a port from 1 to 65535, no query or fragment")
    if not (is_valid_endpoint_url(value) or is_valid_ipv6_endpoint_url(value)):
        raise ValueError(message)
    return value


def _valid_pool_id(value: str) -> str:
    if not is_pool_id(value):
        raise ValueError(f"{quoted(value)} is not a user pool id (like eu-west-1_AbCdEf123)")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Region = Annotated[str | None, AfterValidator(_valid_region)]
EndpointUrl = Annotated[str | None, AfterValidator(_valid_endpoint)]
PoolId = Annotated[str, AfterValidator(_valid_pool_id)]
Integer = Annotated[int, BeforeValidator(_reject_bool)]
Number = Annotated[float, BeforeValidator(_reject_bool)]


class StrictModel(BaseModel):
    """Unknown keys refused, values frozen, and no input echoed in a message."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class CredentialSet(StrictModel):
    """How to obtain AWS credentials; an empty set means boto3's default chain."""

    profile: str | None = None
    role_arn: str | None = None
    external_id: SecretStr | None = None
    role_session_name: str | None = None
    duration: Duration | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        resolved = dict(data)
        for key in [k for k in data if isinstance(k, str) and k.endswith("_file")]:
            field = key.removesuffix("_file")
            if field not in cls.model_fields:
                continue
            if field in data:
                raise ValueError(f"give either {field} or {key}, not both")
            path = resolved.pop(key)
            if not isinstance(path, str):
                raise ValueError(f"{key}: expected a file path")
            resolved[field] = read_secret(key, path)
        return resolved

    @model_validator(mode="after")
    def _check_combination(self) -> CredentialSet:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        if self.profile is not None and self.access_key_id is not None:
            raise ValueError("give either profile or access keys, not both")
        if self.role_arn is None:
            extra = [
                name
                for name in ("external_id", "role_session_name", "duration")
                if getattr(self, name) is not None
            ]
            if extra:
                raise ValueError(f"{', '.join(extra)} need role_arn")
        if self.duration is not None and not 900 <= self.duration <= 43200:
            raise ValueError("duration must be between 15m and 12h")
        return self


class Defaults(StrictModel):
    region: Region = None
    credentials: str = DEFAULT_CREDENTIALS
    endpoint_url: EndpointUrl = None
    page_size: Integer = Field(default=60, ge=1, le=60)
    max_pages: Integer = Field(default=20, ge=1, le=1000)


class Scrape(StrictModel):
    timeout: Duration = 25.0
    max_concurrency: Integer = Field(default=16, ge=1, le=512)
    requests_per_second: Number = Field(default=10.0, gt=0, le=10000)
    pool_requests_per_second: Number = Field(default=5.0, gt=0, le=10000)
    job_window: Duration = 86400.0
    max_jobs_per_pool: Integer = Field(default=20, ge=0, le=1000)
    full_resync_interval: Duration = 600.0
    cache_ttl: Duration = 0.0

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("timeout must be more than zero")
        if value > MAX_SCRAPE_TIMEOUT_SECONDS:
            raise ValueError("timeout must be at most 1h")
        return value


class PoolEntry(StrictModel):
    id: PoolId
    name: str | None = None
    credentials: str | None = None
    region: Region = None
    endpoint_url: EndpointUrl = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not LABEL_NAME_PATTERN.fullmatch(name) or name.startswith("__"):
                raise ValueError(f'"{name}" is not a valid Prometheus label name')
            if name in RESERVED_POOL_LABELS:
                raise ValueError(f'"{name}" is set by the exporter and cannot be a pool label')
        return value


class DiscoveryEntry(StrictModel):
    """Pools found with ListUserPools, filtered by tags, name and exclusions."""

    region: Region = None
    credentials: str | None = None
    endpoint_url: EndpointUrl = None
    tags: dict[str, str] = Field(default_factory=dict)
    name_pattern: str | None = None
    exclude: list[str] = Field(default_factory=list)
    refresh_interval: Duration = 600.0

    @field_validator("name_pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"not a valid regular expression: {error}") from None
        return value

    @field_validator("refresh_interval")
    @classmethod
    def _check_interval(cls, value: float) -> float:
        if value < 10:
            raise ValueError("refresh_interval must be at least 10s")
        return value


class ProbeSettings(StrictModel):
    allow_unlisted: bool = False
    credentials: str | None = None

    @model_validator(mode="after")
    def _check_credentials(self) -> ProbeSettings:
        if self.allow_unlisted and self.credentials is None:
            raise ValueError("allow_unlisted needs a named credential set in credentials")
        return self


class _Document(StrictModel):
    defaults: Defaults = Field(default_factory=Defaults)
    credentials: dict[str, CredentialSet] = Field(default_factory=dict)
    scrape: Scrape = Field(default_factory=Scrape)
    pools: list[PoolEntry] = Field(default_factory=list)
    discovery: list[DiscoveryEntry] = Field(default_factory=list)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)


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
    max_pages: int


@dataclass(frozen=True)
class Discovery:
    """One discovery entry with the defaults applied."""

    region: str
    credentials: str
    endpoint_url: str | None
    tags: tuple[tuple[str, str], ...]
    name_pattern: str | None
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
        return Pool(
            id=pool_id,
            name=name or pool_id,
            region=region or _region_from_pool_id(pool_id) or self.defaults.region or "",
            credentials=credentials or self.defaults.credentials,
            endpoint_url=endpoint_url or self.defaults.endpoint_url,
            labels=(),
            page_size=self.defaults.page_size,
            max_pages=self.defaults.max_pages,
        )


def load(path: str) -> Config:
    return load_text(read_config_text(path), source=path)


def load_text(text: str, source: str = "config") -> Config:
    raw = parse_yaml(text, source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{source}: the top level must be a mapping of keys"])
    problems: list[str] = []
    expanded = _expand_environment(raw, (), problems)
    try:
        document = _Document.model_validate(expanded)
    except ValidationError as error:
        problems += describe_validation_errors(error)
        problems += _reference_problems(expanded)
        raise ConfigError(problems) from None
    problems += _reference_problems(expanded)
    config = _resolve(document, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _reference_problems(raw: Mapping[Any, Any]) -> list[str]:
    """Credential names that are not defined and pools listed twice; read from the raw
    document so they are reported even when other parts of it do not validate."""
    credentials = raw.get("credentials")
    defined = set(credentials) if isinstance(credentials, Mapping) else set()
    defined.add(DEFAULT_CREDENTIALS)
    problems = []
    for where, entry in _credential_users(raw):
        name = entry.get("credentials")
        if isinstance(name, str) and name not in defined:
            problems.append(f'{where}.credentials: unknown credential set "{name}"')
    pools = raw.get("pools")
    seen: dict[str, int] = {}
    for index, entry in enumerate(pools if isinstance(pools, list) else []):
        if not isinstance(entry, Mapping):
            continue
        pool_id = entry.get("id")
        if isinstance(pool_id, str):
            if pool_id in seen:
                problems.append(f"pools[{index}].id: duplicate of pools[{seen[pool_id]}]")
            else:
                seen[pool_id] = index
    return problems


def _expand_environment(value: Any, path: tuple[str | int, ...], problems: list[str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string value."""
    if isinstance(value, str):
        return _expand_string(value, path, problems)
    if isinstance(value, dict):
        return {
            key: _expand_environment(item, (*path, key), problems) for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _expand_environment(item, (*path, index), problems) for index, item in enumerate(value)
        ]
    return value


def _expand_string(value: str, path: tuple[str | int, ...], problems: list[str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if fallback is not None:
            return fallback
        problems.append(f"{format_path(path)}: environment variable {name} is not set")
        return ""

    return _ENV_REFERENCE.sub(substitute, value)


def _credential_users(raw: Mapping[Any, Any]) -> list[tuple[str, Mapping[Any, Any]]]:
    """Every place that names a credential set, with its path."""
    users: list[tuple[str, Mapping[Any, Any]]] = []
    for section in ("defaults", "probe"):
        entry = raw.get(section)
        if isinstance(entry, Mapping):
            users.append((section, entry))
    for section in ("pools", "discovery"):
        entries = raw.get(section)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, Mapping):
                users.append((f"{section}[{index}]", entry))
    return users


def _resolve_discovery(document: _Document, problems: list[str]) -> tuple[Discovery, ...]:
    defaults = document.defaults
    resolved = []
    for index, entry in enumerate(document.discovery):
        region = entry.region or defaults.region
        if region is None:
            problems.append(f"discovery[{index}].region: set region here or in defaults")
            continue
        resolved.append(
            Discovery(
                region=region,
                credentials=entry.credentials or defaults.credentials,
                endpoint_url=entry.endpoint_url or defaults.endpoint_url,
                tags=tuple(sorted(entry.tags.items())),
                name_pattern=entry.name_pattern,
                exclude=frozenset(entry.exclude),
                refresh_interval=entry.refresh_interval,
            )
        )
    return tuple(resolved)


def _resolve(document: _Document, problems: list[str]) -> Config:
    credentials = dict(document.credentials)
    credentials.setdefault(DEFAULT_CREDENTIALS, CredentialSet())
    defaults = document.defaults
    pools = []
    for index, entry in enumerate(document.pools):
        where = f"pools[{index}]"
        credential_name = entry.credentials or defaults.credentials
        region = entry.region or _region_from_pool_id(entry.id) or defaults.region
        if region is None:
            problems.append(
                f"{where}.region: cannot tell the region of {entry.id}; "
                "set region here or in defaults"
            )
            continue
        pools.append(
            Pool(
                id=entry.id,
                name=entry.name or entry.id,
                region=region,
                credentials=credential_name,
                endpoint_url=entry.endpoint_url or defaults.endpoint_url,
                labels=tuple(sorted(entry.labels.items())),
                page_size=defaults.page_size,
                max_pages=defaults.max_pages,
            )
        )
    return Config(
        credentials=credentials,
        scrape=document.scrape,
        pools=tuple(pools),
        defaults=defaults,
        discovery=_resolve_discovery(document, problems),
        probe=document.probe,
    )


def _region_from_pool_id(pool_id: str) -> str | None:
    prefix = pool_id.split("_", 1)[0]
    return prefix if REGION_PATTERN.fullmatch(prefix) else None
