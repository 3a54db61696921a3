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

from exporter.config.files import MAX_TEXT, parse_yaml, read_config_text, text_problems
from exporter.config.model import Config, Discovery, pool_with_defaults, region_for
from exporter.config.problems import ConfigError, describe_validation_errors, format_path, quoted
from exporter.config.schema import (
    DEFAULT_CREDENTIALS,
    ConfigDocument,
    CredentialSet,
    NamePattern,
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
    expanded = _Expansion(problems).of(raw)
    unusable = text_problems(expanded)
    if unusable:  # no later step may see these values
        raise ConfigError(problems + unusable)
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
            problems.append(f"{where}.credentials: unknown credential set {quoted(name)}")
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


class _Expansion:
    """`${VAR}` and `${VAR:-default}` replaced in every string value. A value the document
    repeats through aliases is one object, expanded once; the text expansion makes is
    bounded, since environment variables can be long."""

    def __init__(self, problems: list[str]) -> None:
        self._problems = problems
        self._done: dict[int, Any] = {}
        self._text = 0
        self._over = False

    def of(self, value: Any, path: tuple[str | int, ...] = ()) -> Any:
        key = id(value)
        if key in self._done:
            return self._done[key]
        if isinstance(value, str):
            result: Any = self._string(value, path)
        elif isinstance(value, dict):
            result = {name: self.of(item, (*path, name)) for name, item in value.items()}
        elif isinstance(value, list):
            result = [self.of(item, (*path, index)) for index, item in enumerate(value)]
        else:
            return value
        self._done[key] = result
        return result

    def _string(self, value: str, path: tuple[str | int, ...]) -> str:
        if "${" not in value:
            return value
        expanded = _ENV_REFERENCE.sub(lambda match: self._variable(match, path), value)
        self._text += len(expanded)
        if self._text > MAX_TEXT and not self._over:
            self._over = True
            self._problems.append(
                f"{format_path(path)}: with its environment variables the document is more "
                "than 16 MiB of text"
            )
        return "" if self._over else expanded

    def _variable(self, match: re.Match[str], path: tuple[str | int, ...]) -> str:
        name, fallback = match.group(1), match.group(2)
        if fallback is not None and "${" in fallback:
            self._problems.append(f"{format_path(path)}: a default cannot hold another ${{...}}")
            return ""
        if name in os.environ:
            return os.environ[name]
        if fallback is not None:
            return fallback
        self._problems.append(f"{format_path(path)}: environment variable {name} is not set")
        return ""


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
                name_pattern=NamePattern(entry.name_pattern) if entry.name_pattern else None,
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
        if region_for(entry.id, entry.region, defaults) is None:
            problems.append(
                f"pools[{index}].region: cannot tell the region of {entry.id}; "
                "set region here or in defaults"
            )
            continue
        pools.append(
            pool_with_defaults(
                defaults,
                entry.id,
                name=entry.name,
                region=entry.region,
                credentials=entry.credentials,
                endpoint_url=entry.endpoint_url,
                labels=tuple(sorted(entry.labels.items())),
                reasons=entry.reasons,
                logs_endpoint_url=entry.logs_endpoint_url,
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
