"""AWS sessions and clients: one shared client per (credentials, region, endpoint).

Credentials come from named credential sets. Assume-role credentials use botocore's own
refreshable credentials, so they renew themselves before they expire. Every client keeps
timestamps as epoch seconds (what the metrics need, and half the parsing cost of datetimes)
and reports each HTTP attempt, retries included, to a hook that counts and rate-limits it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import botocore.loaders
import botocore.session
from botocore.config import Config as BotocoreConfig
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    Credentials,
    DeferredRefreshableCredentials,
)

from exporter import __version__
from exporter.cognito.answers import MAX_LOGS_ANSWER_BYTES, AnswerParsers
from exporter.cognito.errors import error_code, service_code
from exporter.cognito.logs import LogsClient
from exporter.config.model import Config, Discovery, Pool
from exporter.config.schema import CredentialSet
from exporter.redaction import safe_error_text

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_sts import STSClient

SERVICE_NAME = "cognito-idp"
SERVICE_EVENT_ID = "cognito-identity-provider"
STS_SERVICE_NAME = "sts"
LOGS_SERVICE_NAME = "logs"
DEFAULT_STS_REGION = "us-east-1"
_EVENT_SERVICES = {SERVICE_EVENT_ID: SERVICE_NAME, STS_SERVICE_NAME: STS_SERVICE_NAME}


class AttemptObserver(Protocol):
    """Sees every HTTP attempt a client makes, retries included, STS's for assumed roles too."""

    def before_attempt(self, service: str, operation: str) -> None:
        """Called before the attempt is sent; may wait (rate limits) or raise to stop the call."""

    def answer_arrived(self, service: str, operation: str) -> None:
        """Called when an answer arrived, before it is read; may raise to stop the call."""

    def after_attempt(self, service: str, operation: str, error_code: str | None) -> None:
        """Called with the attempt's outcome: None when it succeeded, else its error code."""


@dataclass(frozen=True)
class ClientKey:
    credentials: str
    region: str
    endpoint_url: str | None

    @classmethod
    def of(cls, target: Pool | Discovery) -> ClientKey:
        """The client a configured pool or discovery entry is read with."""
        return cls(target.credentials, target.region, target.endpoint_url)


def client_keys(config: Config) -> list[ClientKey]:
    """Every client a configuration reads import jobs and pools with, each once, in order."""
    targets: tuple[Pool | Discovery, ...] = (*config.pools, *config.discovery)
    return list(dict.fromkeys(map(ClientKey.of, targets)))


@dataclass(frozen=True)
class ClientSettings:
    max_pool_connections: int = 16
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 5
    sts_region: str = DEFAULT_STS_REGION


def profile_problems(credential_sets: Mapping[str, CredentialSet]) -> list[str]:
    """Credential sets naming a profile the shared AWS config and credentials files do not
    define; read from the local files, no call made."""
    wanted = {name: entry.profile for name, entry in credential_sets.items() if entry.profile}
    if not wanted:
        return []
    try:
        available = set(botocore.session.Session().available_profiles)
    except Exception as error:  # a shared config file botocore cannot parse
        return [f"credentials: cannot read the shared AWS config files: {safe_error_text(error)}"]
    return [
        f'credentials.{name}.profile: no profile "{profile}" in the shared AWS config files'
        for name, profile in wanted.items()
        if profile not in available
    ]


class _StaticProvider(CredentialProvider):
    METHOD = "cognito-import-exporter"
    CANONICAL_NAME = "cognito-import-exporter"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


class ClientFactory:
    """Builds and caches clients; safe to share between threads."""

    def __init__(
        self,
        credential_sets: Mapping[str, CredentialSet],
        settings: ClientSettings,
        observer: AttemptObserver | None = None,
    ) -> None:
        self._credential_sets = dict(credential_sets)
        self._settings = settings
        self._observer = observer
        self._lock = threading.Lock()
        self._sessions: dict[str, botocore.session.Session] = {}
        self._clients: dict[ClientKey, CognitoIdentityProviderClient] = {}
        self._sts_clients: dict[str, STSClient] = {}
        self._logs_sessions: dict[str, botocore.session.Session] = {}
        self._logs_clients: dict[ClientKey, LogsClient] = {}

    def client(self, key: ClientKey) -> CognitoIdentityProviderClient:
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._new_client(key)
                self._clients[key] = client
            return client

    def logs_client(self, key: ClientKey) -> LogsClient:
        """A CloudWatch Logs client with these credentials, region and endpoint: one attempt
        a call (its caller paces and retries), answers up to a page of log lines."""
        with self._lock:
            client = self._logs_clients.get(key)
            if client is None:
                session = self._logs_sessions.get(key.credentials)
                if session is None:
                    parsers = AnswerParsers(MAX_LOGS_ANSWER_BYTES, lenient_text=True)
                    session = self._new_session(self._credential_sets[key.credentials], parsers)
                    self._logs_sessions[key.credentials] = session
                config = self._botocore_config(key.region).merge(
                    BotocoreConfig(retries={"mode": "standard", "total_max_attempts": 1})
                )
                created = session.create_client(
                    LOGS_SERVICE_NAME,
                    region_name=key.region,
                    endpoint_url=key.endpoint_url,
                    config=config,
                )
                self._observe(created, created.meta.service_model.service_id.hyphenize())
                client = cast("LogsClient", created)
                self._logs_clients[key] = client
            return client

    def sts_client(self, credentials: str) -> STSClient:
        """An STS client with the credential set's own credentials (an assumed role's, for a
        role), for GetCallerIdentity."""
        with self._lock:
            client = self._sts_clients.get(credentials)
            if client is None:
                region = self._settings.sts_region
                created = self._session(credentials).create_client(
                    STS_SERVICE_NAME, region_name=region, config=self._botocore_config(region)
                )
                self._observe(created, STS_SERVICE_NAME)
                client = cast("STSClient", created)
                self._sts_clients[credentials] = client
            return client

    def keep_clients_from(self, previous: ClientFactory) -> None:
        """Reuse the other factory's sessions and clients whose credential sets did not change."""
        with previous._lock:
            unchanged = {
                name
                for name, credential_set in self._credential_sets.items()
                if previous._credential_sets.get(name) == credential_set
            }
            if previous._settings != self._settings or previous._observer is not self._observer:
                return
            with self._lock:
                for name in unchanged:
                    if name in previous._sessions:
                        self._sessions[name] = previous._sessions[name]
                for key, client in previous._clients.items():
                    if key.credentials in unchanged:
                        self._clients[key] = client
                for key, logs_client in previous._logs_clients.items():
                    if key.credentials in unchanged:
                        self._logs_clients[key] = logs_client
                        self._logs_sessions[key.credentials] = previous._logs_sessions[
                            key.credentials
                        ]

    def build(self, keys: Iterable[ClientKey]) -> list[str]:
        """Build the clients for `keys` now; what cannot be built, one line each (a profile
        that does not exist, an endpoint botocore refuses), secrets left out."""
        problems: list[str] = []
        for key in dict.fromkeys(keys):
            try:
                self.client(key)
            except Exception as error:
                problems.append(
                    f'credentials "{key.credentials}" in {key.region}: cannot build a client: '
                    f"{safe_error_text(error)}"
                )
        return problems

    def _new_client(self, key: ClientKey) -> CognitoIdentityProviderClient:
        session = self._session(key.credentials)
        client = session.create_client(
            SERVICE_NAME,
            region_name=key.region,
            endpoint_url=key.endpoint_url,
            config=self._botocore_config(key.region),
        )
        self._observe(client, SERVICE_EVENT_ID)
        # botocore builds the client class from the service model; the stubs name it
        return cast("CognitoIdentityProviderClient", client)

    def _botocore_config(self, region: str) -> BotocoreConfig:
        settings = self._settings
        return BotocoreConfig(
            region_name=region,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=settings.max_pool_connections,
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            user_agent_extra=f"cognito-import-exporter/{__version__}",
            tcp_keepalive=True,
            parameter_validation=False,
        )

    def _observe(self, client: Any, event_service: str) -> None:
        if self._observer is None:
            return
        events = client.meta.events
        events.register(
            f"request-created.{event_service}", functools.partial(_before_attempt, self._observer)
        )
        events.register(
            f"before-parse.{event_service}", functools.partial(_answer_arrived, self._observer)
        )
        events.register(
            f"needs-retry.{event_service}", functools.partial(_after_attempt, self._observer)
        )

    def _session(self, name: str) -> botocore.session.Session:
        session = self._sessions.get(name)
        if session is None:
            session = self._new_session(self._credential_sets[name])
            self._sessions[name] = session
        return session

    def _new_session(
        self, credential_set: CredentialSet, parsers: AnswerParsers | None = None
    ) -> botocore.session.Session:
        if credential_set.role_arn is None:
            return _base_session(credential_set, parsers)
        session = _base_session(CredentialSet(), parsers)
        _use_assumed_role(session, credential_set, self._sts_client_creator(credential_set))
        return session

    def _sts_client_creator(self, credential_set: CredentialSet) -> Callable[..., Any]:
        """STS clients for AssumeRole: the source credentials' session, this exporter's
        timeouts and retries, and the same hooks, so its attempts are bounded and counted."""
        source = _base_session(credential_set)
        region = self._settings.sts_region

        def create(service_name: str, **kwargs: Any) -> Any:
            client = source.create_client(
                service_name, region_name=region, config=self._botocore_config(region), **kwargs
            )
            self._observe(client, STS_SERVICE_NAME)
            return client

        return create


# One loader for every session: it caches the service models and endpoint rules it reads,
# which would otherwise be read and kept again for each credential set.
_SHARED_LOADER = botocore.loaders.create_loader()


@functools.cache
def service_regions() -> frozenset[str]:
    """The regions botocore's endpoint data offers Cognito user pools in, every partition."""
    session = botocore.session.Session()
    session.register_component("data_loader", _SHARED_LOADER)
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("cognito-idp", partition)
    )


def _base_session(
    credential_set: CredentialSet, parsers: AnswerParsers | None = None
) -> botocore.session.Session:
    session = botocore.session.Session(profile=credential_set.profile)
    session.register_component("data_loader", _SHARED_LOADER)
    session.register_component("response_parser_factory", parsers or AnswerParsers())
    if credential_set.access_key_id is not None and credential_set.secret_access_key is not None:
        session.set_credentials(
            credential_set.access_key_id,
            credential_set.secret_access_key.get_secret_value(),
            credential_set.session_token.get_secret_value()
            if credential_set.session_token is not None
            else None,
        )
    return session


def _use_assumed_role(
    session: botocore.session.Session,
    credential_set: CredentialSet,
    sts_client_creator: Callable[..., Any],
) -> None:
    source_credentials = _base_session(credential_set).get_credentials()
    extra_args: dict[str, Any] = {
        "RoleSessionName": credential_set.role_session_name or "cognito-import-exporter"
    }
    if credential_set.external_id is not None:
        extra_args["ExternalId"] = credential_set.external_id.get_secret_value()
    if credential_set.duration is not None:
        extra_args["DurationSeconds"] = int(credential_set.duration)
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=sts_client_creator,
        source_credentials=source_credentials,
        role_arn=str(credential_set.role_arn),
        extra_args=extra_args,
    )
    refreshable = DeferredRefreshableCredentials(
        refresh_using=fetcher.fetch_credentials, method="assume-role"
    )
    resolver = session.get_component("credential_provider")
    resolver.insert_before("env", _StaticProvider(refreshable))


def _event_parts(event_name: str) -> tuple[str, str]:
    """(service, operation) of `request-created.<service>.<Operation>`."""
    _, service, operation = event_name.split(".", 2)
    return _EVENT_SERVICES.get(service, service), operation


def _before_attempt(observer: AttemptObserver, event_name: str, **_: Any) -> None:
    observer.before_attempt(*_event_parts(event_name))


def _answer_arrived(observer: AttemptObserver, event_name: str, **_: Any) -> None:
    observer.answer_arrived(*_event_parts(event_name))


def _after_attempt(
    observer: AttemptObserver,
    event_name: str,
    response: tuple[Any, Mapping[str, Any]] | None = None,
    caught_exception: BaseException | None = None,
    **_: Any,
) -> None:
    if caught_exception is not None:
        code: str | None = error_code(caught_exception)
    elif response is not None and "Error" in response[1]:
        code = service_code(str(response[1]["Error"].get("Code", "")))
    else:
        code = None
    observer.after_attempt(*_event_parts(event_name), code)
