"""The simulated service: the model behind the wire format, with fault knobs flipped at run
time and every call counted, so tests and the benchmark can check what the exporter asked."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from exporter.demo.lifecycle import JsonObject, Lifecycle
from exporter.demo.logs import LOGS_TARGET_PREFIX, SimulatedLogs
from exporter.demo.model import DEFAULT_ACCOUNT_ID, CognitoModel, ServiceError
from exporter.demo.wire import (
    TARGET_PREFIX,
    Reply,
    TokenCodec,
    credential_of,
    error_reply,
    garbage_reply,
    invalid_token,
    job_id_param,
    json_reply,
    limit_param,
    optional_token_param,
    parsed_params,
    pool_id_param,
    signed_scope,
    sts_assume_role_reply,
    sts_caller_identity_reply,
    sts_error_reply,
    sts_params,
)

LIST_CALL_HISTORY = 10_000
SERVICE_PAGE_JOBS = 50
GarbageMode = Literal[
    "text", "empty", "truncated", "wrong_shape", "repeat_token", "oversized", "overfull"
]


@dataclass
class Faults:
    """Run-time fault knobs, read afresh on every request."""

    latency: float = 0.0
    throttle_rate: float = 0.0
    failing_pools: dict[str, str] = field(default_factory=dict)
    slow_pools: dict[str, float] = field(default_factory=dict)
    slow_operations: dict[str, float] = field(default_factory=dict)
    garbage_pools: set[str] = field(default_factory=set)
    garbage_mode: GarbageMode = "text"
    # seconds between the bytes of every answer for the pool, status line included
    drip_pools: dict[str, float] = field(default_factory=dict)
    # ListUserPools tokens that come round again: A, B, A, ...
    cycling_pool_tokens: bool = False
    # error messages of failing pools and of AssumeRole echo the caller's credentials
    echo_credentials: bool = False
    # AssumeRole answers with this error code
    assume_role_error: str | None = None
    # the last page of a job list carries a token too; the page after it is empty
    trailing_token: bool = False
    # GetProvisionedLimit answers with this error code
    provisioned_limit_error: str | None = None
    # GetCallerIdentity answers with this error code
    caller_identity_error: str | None = None

    def clear(self) -> None:
        for name, value in vars(Faults()).items():
            setattr(self, name, value)


class SimulatedCognito(CognitoModel):
    """The model served over awsJson1.1 (`respond`), with faults and call accounting."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        *,
        lifecycle: Lifecycle | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        super().__init__(clock, seed, lifecycle=lifecycle, account_id=account_id)
        self.faults = Faults()
        # the jobs' CloudWatch logs, served on the same endpoint (FilterLogEvents)
        self.logs = SimulatedLogs(self, seed)
        self.calls: Counter[str] = Counter()
        self.calls_by_pool: Counter[str] = Counter()
        self.list_calls_at: deque[float] = deque(maxlen=LIST_CALL_HISTORY)
        self._counting = threading.Lock()
        self._draws = random.Random(f"{seed}/throttle")  # noqa: S311 - seeded on purpose
        self._tokens = TokenCodec(seed)
        # the account each access key belongs to (others: the model's account), and the
        # UserPoolResourceRead rate provisioned per (account, region) (others: the default)
        self.accounts: dict[str, str] = {}
        self.provisioned_limits: dict[tuple[str, str], float] = {}
        self._operations: dict[str, Callable[[JsonObject], JsonObject]] = {
            "ListUserImportJobs": self._list_user_import_jobs,
            "DescribeUserImportJob": self._describe_user_import_job,
            "ListUserPools": self._list_user_pools,
            "DescribeUserPool": self._describe_user_pool,
            "GetProvisionedLimit": self._get_provisioned_limit,
        }

    # ----- call accounting -----

    def call_counts(self) -> dict[str, int]:
        with self._counting:
            return dict(self.calls)

    def pool_call_counts(self) -> dict[str, int]:
        with self._counting:
            return dict(self.calls_by_pool)

    def list_call_times(self) -> list[float]:
        with self._counting:
            return list(self.list_calls_at)

    def reset_calls(self) -> None:
        with self._counting:
            self.calls.clear()
            self.calls_by_pool.clear()
            self.list_calls_at.clear()

    # ----- the wire -----

    def respond(
        self, target: str | None, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Answer one awsJson1.1 request (or an STS query request). A latency fault is the
        time the answer takes from arrival, the simulator's own work included, slept out in
        the caller's thread."""
        arrived = time.monotonic()
        headers = headers or {}
        if target is None and body.startswith(b"Action="):
            return self._respond_sts(body, headers)
        if target is not None and target.startswith(LOGS_TARGET_PREFIX):
            return self.logs.respond(target, body)
        delay = 0.0
        pool_key: str | None = None
        try:
            operation = self._operation_of(target)
            self._count_call(operation)
            params = parsed_params(body)
            pool_id = params.get("UserPoolId")
            pool_key = pool_id if isinstance(pool_id, str) else None
            if operation == "ListUserImportJobs" and pool_key is not None:
                self._count_pool_call(pool_key)
            delay = self._latency_for(pool_key) + self.faults.slow_operations.get(operation, 0.0)
            reply = self._answer(operation, params, pool_key, headers)
        except ServiceError as error:
            reply = error_reply(error.code, error.message)
        except Exception as error:
            reply = error_reply("InternalErrorException", f"simulator error: {error!r}")
        left = arrived + delay - time.monotonic()
        if left > 0:
            time.sleep(left)
        drip = self.faults.drip_pools.get(pool_key or "", 0.0)
        return replace(reply, drip=drip) if drip else reply

    def _respond_sts(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        params = sts_params(body)
        action = params.get("Action", "")
        self._count_call(action)
        if action == "GetCallerIdentity":
            if self.faults.caller_identity_error is not None:
                return sts_error_reply(self.faults.caller_identity_error, "Simulated failure.")
            access_key, _ = signed_scope(headers)
            return sts_caller_identity_reply(self.account_of(access_key), access_key)
        if action != "AssumeRole":
            return sts_error_reply("InvalidAction", f"Could not find operation {action}.")
        error = self.faults.assume_role_error
        if error is not None:
            message = (
                f"User is not authorized to perform: sts:AssumeRole on {params.get('RoleArn')}"
            )
            if self.faults.echo_credentials:
                message += f" (ExternalId {params.get('ExternalId')}, {credential_of(headers)})"
            return sts_error_reply(error, message)
        with self._counting:
            return sts_assume_role_reply(params, self.clock(), self._draws)

    def _answer(
        self, operation: str, params: JsonObject, pool_key: str | None, headers: Mapping[str, str]
    ) -> Reply:
        self._raise_if_throttled()
        faults = self.faults
        if pool_key is not None and pool_key in faults.failing_pools:
            code = faults.failing_pools[pool_key]
            message = f"Simulated failure for user pool {pool_key}."
            if faults.echo_credentials:
                message += f" Request signed with {credential_of(headers)}."
            raise ServiceError(code, message)
        garbage = pool_key is not None and pool_key in faults.garbage_pools
        mode = faults.garbage_mode
        if garbage and mode in {"text", "empty", "wrong_shape"}:
            return garbage_reply(mode)
        self._refuse_in_replica_regions(operation, pool_key, headers)
        if operation == "GetProvisionedLimit":
            return json_reply(self._get_provisioned_limit(params, headers))
        result = self._operations[operation](params)
        if garbage and mode == "repeat_token" and operation == "ListUserImportJobs":
            result["PaginationToken"] = self._same_page_token(params)
        if garbage and mode == "oversized":
            result["Padding"] = "x" * (3 * 1024 * 1024)
        if garbage and mode == "overfull" and operation == "ListUserImportJobs":
            listed = result["UserImportJobs"]
            result["UserImportJobs"] = (listed if isinstance(listed, list) else []) * 61
        reply = json_reply(result)
        if garbage and mode == "truncated":
            return Reply(200, reply.body[: max(1, len(reply.body) // 2)])
        return reply

    def _operation_of(self, target: str | None) -> str:
        operation = (target or "").removeprefix(TARGET_PREFIX)
        if (
            target is None
            or not target.startswith(TARGET_PREFIX)
            or operation not in self._operations
        ):
            raise ServiceError("UnknownOperationException", f"Unknown operation {target!r}.")
        return operation

    def _count_call(self, operation: str) -> None:
        with self._counting:
            self.calls[operation] += 1

    def _count_pool_call(self, pool_id: str) -> None:
        with self._counting:
            self.calls_by_pool[pool_id] += 1
            self.list_calls_at.append(self.clock())

    def _latency_for(self, pool_id: str | None) -> float:
        faults = self.faults
        return faults.latency + (faults.slow_pools.get(pool_id, 0.0) if pool_id else 0.0)

    def _raise_if_throttled(self) -> None:
        rate = self.faults.throttle_rate
        if rate <= 0:
            return
        with self._counting:
            throttled = self._draws.random() < rate
        if throttled:
            raise ServiceError("TooManyRequestsException", "Rate exceeded")

    def account_of(self, access_key: str) -> str:
        return self.accounts.get(access_key, self.account_id)

    def _refuse_in_replica_regions(
        self, operation: str, pool_id: str | None, headers: Mapping[str, str]
    ) -> None:
        if operation != "ListUserImportJobs" or pool_id is None:
            return
        _, region = signed_scope(headers)
        with self._lock:
            pool = self._pools.get(pool_id)
            replicas = pool.replica_regions if pool is not None else ()
        if region in replicas:
            raise ServiceError(
                "OperationNotEnabledException",
                f"ListUserImportJobs is not available in {region}, a replica region of the "
                "user pool.",
            )

    # ----- operations -----

    def _list_user_import_jobs(self, params: JsonObject) -> JsonObject:
        pool_id = pool_id_param(params)
        limit = limit_param(params, "MaxResults", "maxResults")
        token = optional_token_param(params, "PaginationToken", "paginationToken")
        cursor = None if token is None else self._tokens.jobs_cursor(token, pool_id)
        # MaxResults takes up to 60, and an answer holds 50 jobs at most, as the service's
        page, next_cursor, more = self.jobs_older_than(
            pool_id, min(limit, SERVICE_PAGE_JOBS), cursor
        )
        result: JsonObject = {"UserImportJobs": page}
        if next_cursor is not None and (more or (page and self.faults.trailing_token)):
            result["PaginationToken"] = self._tokens.token(
                {"k": "jobs", "p": pool_id, "c": list(next_cursor)}
            )
        return result

    def _describe_user_import_job(self, params: JsonObject) -> JsonObject:
        return {"UserImportJob": self.describe_job(pool_id_param(params), job_id_param(params))}

    def _list_user_pools(self, params: JsonObject) -> JsonObject:
        limit = limit_param(params, "MaxResults", "maxResults")
        token = optional_token_param(params, "NextToken", "nextToken")
        start = 0 if token is None else self._tokens.pools_index(token)
        try:
            page, count = self.pools_from(start, limit)
        except IndexError:
            raise invalid_token() from None
        result: JsonObject = {"UserPools": page}
        if self.faults.cycling_pool_tokens:
            # A, B, A, B, ...: each token names the other one's place
            result["NextToken"] = self._tokens.token({"k": "pools", "i": 0 if start else 1})
        elif start + limit < count:
            result["NextToken"] = self._tokens.token({"k": "pools", "i": start + limit})
        return result

    def _get_provisioned_limit(
        self, params: JsonObject, headers: Mapping[str, str] | None = None
    ) -> JsonObject:
        definition = params.get("LimitDefinition")
        attributes = definition.get("Attributes") if isinstance(definition, dict) else None
        if not isinstance(definition, dict) or definition.get("LimitClass") != "API_CATEGORY":
            raise ServiceError("InvalidParameterException", "LimitClass must be API_CATEGORY.")
        if not isinstance(attributes, dict) or not isinstance(attributes.get("Category"), str):
            raise ServiceError("InvalidParameterException", "Attributes must name a Category.")
        error = self.faults.provisioned_limit_error
        if error is not None:
            raise ServiceError(error, "User is not authorized to perform GetProvisionedLimit.")
        access_key, region = signed_scope(headers or {})
        limit = self.provisioned_limits.get((self.account_of(access_key), region), 20)
        return {
            "Limit": {
                "LimitDefinition": definition,
                "ProvisionedLimitValue": limit,
                "FreeLimitValue": 20,
            }
        }

    def _describe_user_pool(self, params: JsonObject) -> JsonObject:
        return {"UserPool": self.describe_pool(pool_id_param(params))}

    def _same_page_token(self, params: JsonObject) -> str:
        token = params.get("PaginationToken")
        if isinstance(token, str):
            return token
        return self._tokens.token({"k": "jobs", "p": params.get("UserPoolId"), "c": None})
