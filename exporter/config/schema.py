"""The configuration file's schema: strict models of every section, and the building blocks
they share with the web config (`StrictModel`, `ExactModel`, `Duration`, the AWS name checks).
Values are checked one by one here; `exporter.config.load` checks what spans sections.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import re2
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)

from exporter.config.files import read_secret
from exporter.config.problems import printable, quoted

# The service's own patterns, in ASCII: \w would take any Unicode letter, and `$` a newline.
POOL_ID_PATTERN = re.compile(r"[\w-]+_[0-9a-zA-Z]+", re.ASCII)
POOL_ID_MAX_LENGTH = 55
ACCOUNT_ID_PATTERN = re.compile(r"[0-9]{12}", re.ASCII)
MAX_REQUESTS_PER_SECOND = 10_000
REGION_PATTERN = re.compile(r"[a-z]{2,4}(-[a-z]+)+-\d+", re.ASCII)
LABEL_NAME_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*", re.ASCII)
RESERVED_POOL_LABELS = frozenset({"user_pool_id", "user_pool_name", "region"})
DEFAULT_CREDENTIALS = "default"
MAX_DURATION_SECONDS = 366 * 86400.0
MAX_SCRAPE_TIMEOUT_SECONDS = 3600.0
_DURATION_PATTERN = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def is_pool_id(text: str) -> bool:
    """A user pool id as the service accepts it: `<region>_<letters and digits>`, ASCII."""
    return len(text) <= POOL_ID_MAX_LENGTH and POOL_ID_PATTERN.fullmatch(text) is not None


def parse_duration(value: object) -> float:
    """Seconds from `30s`, `5m`, `1h30m`, `250ms` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or a number of seconds")
    if isinstance(value, int) and abs(value) > MAX_DURATION_SECONDS:
        raise ValueError("a duration must be at most 366d")  # float() would overflow first
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and len(value) > 64:
        raise ValueError("a duration is at most 64 characters long")
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
                f"invalid duration {quoted(value)}: use a number of seconds or units ms, s, m, h, d"
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
    if isinstance(value, int) and abs(value) > 2**63:
        raise ValueError("a number this large is not a setting")
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


def _valid_account_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not ACCOUNT_ID_PATTERN.fullmatch(value):
        raise ValueError('expected the 12 digits of an AWS account id, quoted ("012345678901")')
    return value


def _request_rate(value: object) -> float | Literal["auto"]:
    if value == "auto":
        return "auto"
    _reject_bool(value)
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("expected auto or a number of requests a second") from None
    if not 0 < rate <= MAX_REQUESTS_PER_SECOND:
        raise ValueError(f"expected auto or more than 0 and at most {MAX_REQUESTS_PER_SECOND:g}")
    return rate


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
AccountId = Annotated[str | None, BeforeValidator(_valid_account_id)]
RequestRate = Annotated[float | Literal["auto"], PlainValidator(_request_rate)]


class NamePattern:
    """A regular expression searched in pool names, in RE2's syntax and time, as Prometheus'
    own are: linear in the name, so no pattern and no pool name can make a match run away
    (Python's re would backtrack for hours on `^(a+)+$` and a long enough name)."""

    _options = re2.Options()
    _options.log_errors = False  # RE2 would write the pattern to stderr itself

    def __init__(self, text: str) -> None:
        try:
            self._compiled = re2.compile(text, self._options)
        except re2.error as error:
            reason = error.args[0] if error.args else "syntax error"
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise ValueError(f"not a valid regular expression: {printable(str(reason))}") from None
        self.text = text

    def search(self, name: str) -> bool:
        return self._compiled.search(name) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NamePattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"NamePattern({self.text!r})"


class StrictModel(BaseModel):
    """Unknown keys refused, values frozen, and no input echoed in a message."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ExactModel(StrictModel):
    """A strict model whose values must have their type already, as Go's YAML decoding wants
    for the exporter-toolkit's web config: `"yes"` is not a boolean, `"10"` not a number."""

    model_config = ConfigDict(strict=True)


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
    # the AWS account these credentials reach, when known; else read once with
    # sts:GetCallerIdentity (or from role_arn): two sets of one account share its quota
    account_id: AccountId = None

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
    # a pool keeps 1,000 jobs by default and the quota can be raised: the bound catches a
    # list that never ends, not a large pool
    max_jobs: Integer = Field(default=100_000, ge=1, le=10_000_000)
    # read why users were skipped or failed from finished jobs' CloudWatch logs
    reasons: bool = False
    # where CloudWatch Logs is asked for them (None: the region's own endpoint)
    logs_endpoint_url: EndpointUrl = None

    @model_validator(mode="before")
    @classmethod
    def _replaced_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "max_pages" in data:
            raise ValueError(
                "max_pages is replaced by max_jobs, the most jobs a pool may list "
                "(pages follow from it, 50 jobs a page)"
            )
        return data


class Scrape(StrictModel):
    timeout: Duration = 25.0
    max_concurrency: Integer = Field(default=16, ge=1, le=512)
    # "auto": quota_share of the rate Cognito enforces for the account and region
    # (GetProvisionedLimit), read at start and every quota_refresh_interval
    requests_per_second: RequestRate = "auto"
    quota_share: Number = Field(default=0.5, gt=0, le=1)
    quota_refresh_interval: Duration = Field(default=3600.0, ge=60, le=86400)
    pool_requests_per_second: Number = Field(default=5.0, gt=0, le=10000)
    job_window: Duration = 86400.0
    max_jobs_per_pool: Integer = Field(default=20, ge=0, le=1000)
    full_resync_interval: Duration = 600.0
    # every pool is refreshed at least this often (see exporter.collect.schedule for the
    # default: what the default budget affords a region of 1,000 pools)
    max_staleness: Duration = Field(default=300.0, ge=1)
    cache_ttl: Duration = 0.0

    @property
    def reads_quota(self) -> bool:
        """Whether the account rate follows the quota Cognito enforces (GetProvisionedLimit)."""
        return self.requests_per_second == "auto"

    def account_rate(self, quota: float) -> float:
        """Requests a second for an account and region whose quota is `quota`."""
        if self.requests_per_second == "auto":
            return quota * self.quota_share
        return float(self.requests_per_second)

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
    reasons: bool | None = None
    logs_endpoint_url: EndpointUrl = None

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not LABEL_NAME_PATTERN.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{quoted(name)} is not a valid Prometheus label name")
            if name in RESERVED_POOL_LABELS:
                raise ValueError(
                    f"{quoted(name)} is set by the exporter and cannot be a pool label"
                )
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
            NamePattern(value)
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


class ConfigDocument(StrictModel):
    """The whole file, before defaults are applied."""

    defaults: Defaults = Field(default_factory=Defaults)
    credentials: dict[str, CredentialSet] = Field(default_factory=dict)
    scrape: Scrape = Field(default_factory=Scrape)
    pools: list[PoolEntry] = Field(default_factory=list)
    discovery: list[DiscoveryEntry] = Field(default_factory=list)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)


def region_from_pool_id(pool_id: str) -> str | None:
    """The region a pool id names (`eu-west-1_AbC` → `eu-west-1`), if it names one."""
    prefix = pool_id.split("_", 1)[0]
    return prefix if REGION_PATTERN.fullmatch(prefix) else None
