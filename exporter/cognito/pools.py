"""ListUserPools and DescribeUserPool: the pools of an account and region, page by page and
bounded, and the tags of one pool; every answer checked before anything of it is used.

Paging ends on a repeated token (`PaginationLoop`) and after MAX_LISTED_POOLS pools, so an
answer that never ends cannot hold discovery. Each call goes through `call`, which paces it
and bounds its time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.cognito.jobs import PagingError
from exporter.config.schema import is_pool_id

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient

PAGE_SIZE = 60
# Cognito's default quota is 1,000 pools per account and region; this leaves room for
# raised quotas while a token that never ends is still caught.
MAX_LISTED_POOLS = 100_000
MAX_PAGES = -(-MAX_LISTED_POOLS // PAGE_SIZE)
MAX_NAME_LENGTH = 128

Call = Callable[..., Any]
"""`call(method, **request)`: makes one API call and returns its answer."""


@dataclass(frozen=True)
class PoolSummary:
    pool_id: str
    name: str
    modified: float | None


def listed_pools(client: CognitoIdentityProviderClient, call: Call) -> Iterator[PoolSummary]:
    """Every pool ListUserPools lists, in its order; entries that are not sound are skipped."""
    token: str | None = None
    seen_tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        request: dict[str, Any] = {"MaxResults": PAGE_SIZE}
        if token:
            request["NextToken"] = token
        answer = _object(call(client.list_user_pools, **request))
        pools = answer.get("UserPools", [])
        if not isinstance(pools, list):
            raise PagingError("InvalidResponse", "UserPools is not a list")
        for entry in pools:
            summary = _summary(entry)
            if summary is not None:
                yield summary
        token = answer.get("NextToken")
        if not token:
            return
        if not isinstance(token, str):
            raise PagingError("InvalidResponse", "NextToken is not a string")
        if token in seen_tokens:
            raise PagingError("PaginationLoop", "ListUserPools repeated a pagination token")
        seen_tokens.add(token)
    raise PagingError("MaxPagesExceeded", f"more than {MAX_LISTED_POOLS:,} user pools listed")


def pool_tags(client: CognitoIdentityProviderClient, call: Call, pool_id: str) -> dict[str, str]:
    """The pool's tags, from DescribeUserPool."""
    pool = _object(call(client.describe_user_pool, UserPoolId=pool_id)).get("UserPool")
    tags = pool.get("UserPoolTags") if isinstance(pool, dict) else None
    if not isinstance(tags, dict):
        return {}
    return {str(key): str(value) for key, value in tags.items()}


def _summary(entry: object) -> PoolSummary | None:
    if not isinstance(entry, dict):
        return None
    pool_id, name, modified = entry.get("Id"), entry.get("Name"), entry.get("LastModifiedDate")
    if not isinstance(pool_id, str) or not is_pool_id(pool_id):
        return None
    return PoolSummary(
        pool_id=pool_id,
        name=name[:MAX_NAME_LENGTH] if isinstance(name, str) else "",
        modified=float(modified) if isinstance(modified, int | float) else None,
    )


def _object(answer: object) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise PagingError("InvalidResponse", "the answer is not an object")
    return answer


def pool_name(client: CognitoIdentityProviderClient, pool_id: str) -> str:
    """The pool's own name, from DescribeUserPool: the name its log group carries, which a
    configured name (a display name) need not be. Cognito never renames a pool."""
    pool = _object(client.describe_user_pool(UserPoolId=pool_id)).get("UserPool")
    name = pool.get("Name") if isinstance(pool, dict) else None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH or "/" in name:
        raise PagingError("InvalidResponse", "DescribeUserPool names no valid pool name")
    return name
