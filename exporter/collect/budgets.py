"""The request budget of each AWS account and region, shared by every credential set that
reaches the account.

Cognito's quotas are per account and region, and the customer's own applications spend the
same ones. Each credential set's account is known from the config (`account_id`), from its
role's ARN, or read once with sts:GetCallerIdentity; a set whose account cannot be resolved gets a
budget of its own. With `scrape.requests_per_second: auto` the budget is `quota_share` of the
rate GetProvisionedLimit says Cognito enforces, read at start and every
`quota_refresh_interval`; when that cannot be read, of the default quota (20 a second).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from exporter.cognito.accounts import (
    RESOURCE_READ,
    account_in_arn,
    caller_account,
    provisioned_limit,
)
from exporter.cognito.clients import ClientFactory, ClientKey, client_keys
from exporter.cognito.errors import error_code
from exporter.collect.attempts import AccountRegion, AttemptGate, CallScope, calling_for
from exporter.collect.metrics import ExporterMetrics
from exporter.config.model import Config, Pool
from exporter.config.schema import CredentialSet
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

# UserPoolResourceRead's default: requests a second per account and region
DEFAULT_QUOTA = 20.0
CALL_SECONDS = 10.0
MAX_AT_ONCE = 32
UNRESOLVED_RETRY_SECONDS = 60.0
T = TypeVar("T")
R = TypeVar("R")


class Budgets:
    def __init__(self, gate: AttemptGate, metrics: ExporterMetrics) -> None:
        self._gate = gate
        self._metrics = metrics
        self._lock = threading.Lock()
        self._config: Config | None = None
        self._clients: ClientFactory | None = None
        self._accounts: dict[str, tuple[CredentialSet, str | None]] = {}
        self._budgeted: set[AccountRegion] = set()
        # the quotas read successfully, with their api_quota series
        self._last_quota: dict[AccountRegion, float] = {}
        self._warned: set[Hashable] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def configure(self, config: Config, clients: ClientFactory) -> None:
        """The configuration in force; accounts already resolved stay known while their
        credential set is unchanged."""
        with self._lock:
            self._config, self._clients = config, clients
            self._accounts = {
                name: known
                for name, known in self._accounts.items()
                if config.credentials.get(name) == known[0]
            }
        scrape = config.scrape
        self._gate.set_rates(scrape.account_rate(DEFAULT_QUOTA), scrape.pool_requests_per_second)

    def account_key(self, pool: Pool) -> AccountRegion:
        return self._budget_of(pool.credentials, pool.region)

    def known_account(self, pool: Pool) -> str | None:
        """The account the pool's credentials reach; None while it cannot be resolved."""
        known = self._accounts.get(pool.credentials)
        return known[1] if known is not None else None

    def _budget_of(self, credentials: str, region: str) -> AccountRegion:
        known = self._accounts.get(credentials)
        return AccountRegion.of(known[1] if known is not None else None, credentials, region)

    def refresh(self, *, reread_quotas: bool = True) -> None:
        """Resolve the accounts not yet known, then set every account and region's budget.
        Without `reread_quotas` (a reload), only quotas never read are asked for."""
        with self._lock:
            config, clients = self._config, self._clients
        if config is None or clients is None:
            return
        targets = client_keys(config)
        names = sorted({key.credentials for key in targets})
        # at once, not one after another: an STS or Cognito that does not answer costs one
        # call's deadline at start, however many credential sets and regions there are
        _each(names, lambda name: self._resolve_account(name, config.credentials[name], clients))
        scrape = config.scrape
        first_key: dict[AccountRegion, ClientKey] = {}
        for client_key in targets:
            first_key.setdefault(
                self._budget_of(client_key.credentials, client_key.region), client_key
            )
        budgeted = set(first_key)
        quotas = dict.fromkeys(first_key, DEFAULT_QUOTA)
        if scrape.reads_quota:
            known = {} if reread_quotas else dict(self._last_quota)
            unknown = [budget for budget in first_key if budget not in known]
            quotas = {
                **{budget: known[budget] for budget in first_key if budget in known},
                **_each(unknown, lambda budget: self._quota(budget, clients, first_key[budget])),
            }
        rates = {budget: scrape.account_rate(quota) for budget, quota in quotas.items()}
        for budget, rate in rates.items():
            self._gate.set_account_rate(budget, rate)
            self._metrics.api_budget.labels(account_id=budget.account, region=budget.region).set(
                rate
            )
            # at zero from the start, so a rate over them is there before the first throttle
            self._metrics.api_account_requests.labels(budget.account, budget.region)
            self._metrics.api_account_throttles.labels(budget.account, budget.region)
        for gone in self._budgeted - budgeted:
            self._gate.set_account_rate(gone, None)
            self._metrics.api_budget.remove(gone.account, gone.region)
            self._metrics.api_account_requests.remove(gone.account, gone.region)
            self._metrics.api_account_throttles.remove(gone.account, gone.region)
            if self._last_quota.pop(gone, None) is not None:
                self._metrics.api_quota.remove(gone.account, gone.region, RESOURCE_READ)
        self._budgeted = budgeted

    def start(self) -> None:
        """Refresh now, then every quota_refresh_interval, in the background."""
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="budgets", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            if self._stop.wait(self.next_refresh_in()):
                return
            self.refresh()

    def next_refresh_in(self) -> float:
        """quota_refresh_interval; sooner while a credential set's account is not resolved, since
        its pools spend a budget of their own beside their account's until it is."""
        config = self._config
        interval = config.scrape.quota_refresh_interval if config is not None else 3600.0
        with self._lock:
            unresolved = any(account is None for _, account in self._accounts.values())
        return min(interval, UNRESOLVED_RETRY_SECONDS) if unresolved else interval

    def _resolve_account(
        self, name: str, credential_set: CredentialSet, clients: ClientFactory
    ) -> None:
        known = self._accounts.get(name)
        if known is not None and known[1] is not None:
            return
        account = credential_set.account_id
        if account is None and credential_set.role_arn is not None:
            account = account_in_arn(credential_set.role_arn)
        if account is None:
            try:
                with calling_for(CallScope("", None, _deadline())):
                    account = caller_account(clients.sts_client(name))
            except Exception as error:
                self._warn_once(
                    ("account", name),
                    "cannot tell which account the credentials reach; they get a budget of "
                    "their own",
                    credentials=name,
                    error_code=error_code(error),
                    error=safe_error_text(error),
                )
        with self._lock:
            self._accounts[name] = (credential_set, account)

    def _quota(self, budget: AccountRegion, clients: ClientFactory, key: ClientKey) -> float:
        try:
            with calling_for(CallScope("", None, _deadline())):
                limit = provisioned_limit(clients.client(key))
        except Exception as error:
            # a refresh that fails keeps the rate last read (and its series); only an account
            # never read gets the default
            known = self._last_quota.get(budget)
            kept = (
                f"keeping the rate last read, {known:g} requests a second"
                if known is not None
                else f"assuming the default {DEFAULT_QUOTA:g} requests a second"
            )
            self._warn_once(
                ("quota", budget),
                f"cannot read the account's provisioned rate; {kept}",
                account_id=budget.account,
                region=budget.region,
                error_code=error_code(error),
                error=safe_error_text(error),
            )
            return DEFAULT_QUOTA if known is None else known
        self._metrics.api_quota.labels(
            account_id=budget.account, region=budget.region, category=RESOURCE_READ
        ).set(limit.provisioned)
        self._last_quota[budget] = limit.provisioned
        self._warned.discard(("quota", budget))
        return limit.provisioned

    def _warn_once(self, key: Hashable, message: str, **fields: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(message, extra={"fields": fields})


def _each(items: Sequence[T], call: Callable[[T], R]) -> dict[T, R]:
    """`call` on every item, at most MAX_AT_ONCE at a time."""
    if len(items) <= 1:
        return {item: call(item) for item in items}
    with ThreadPoolExecutor(min(MAX_AT_ONCE, len(items)), "budgets") as workers:
        return dict(zip(items, workers.map(call, items), strict=True))


def _deadline() -> float:
    return time.monotonic() + CALL_SECONDS
