"""Loading the configuration file: read (bounded), `${VAR}` expanded, validated against the
schema, cross-references checked, defaults applied.

`load()` returns a `Config` or raises one `ConfigError` that lists every problem in the file,
each prefixed with its path (`pools[2].credentials: unknown credential set "prdo"`). Secret
values never appear in those messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from exporter.config.files import parse_yaml, read_config_text
from exporter.config.model import Config, Discovery, Pool
from exporter.config.problems import ConfigError, describe_validation_errors, format_path
from exporter.config.schema import (
    DEFAULT_CREDENTIALS,
    ConfigDocument,
    CredentialSet,
    region_from_pool_id,
)

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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
        document = ConfigDocument.model_validate(expanded)
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


def _resolve_discovery(document: ConfigDocument, problems: list[str]) -> tuple[Discovery, ...]:
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


def _resolve(document: ConfigDocument, problems: list[str]) -> Config:
    credentials = dict(document.credentials)
    credentials.setdefault(DEFAULT_CREDENTIALS, CredentialSet())
    defaults = document.defaults
    pools = []
    for index, entry in enumerate(document.pools):
        where = f"pools[{index}]"
        credential_name = entry.credentials or defaults.credentials
        region = entry.region or region_from_pool_id(entry.id) or defaults.region
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
