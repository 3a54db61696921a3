"""Which AWS account a credential set reaches (sts:GetCallerIdentity, or the account in a
role's ARN), and the request rate Cognito enforces for an account and region
(GetProvisionedLimit)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.cognito.errors import InvalidResponseError
from exporter.config.schema import ACCOUNT_ID_PATTERN

if TYPE_CHECKING:
    from mypy_boto3_cognito_idp import CognitoIdentityProviderClient
    from mypy_boto3_sts import STSClient

# the quota category of ListUserImportJobs and DescribeUserImportJob
RESOURCE_READ = "UserPoolResourceRead"
_ARN_ACCOUNT = re.compile(r"arn:aws[a-z-]*:(?:iam|sts)::([0-9]{12}):", re.ASCII)


@dataclass(frozen=True)
class ProvisionedLimit:
    """Requests a second: the rate enforced for the account and region, and the free one."""

    provisioned: float
    free: float | None


def account_in_arn(arn: str) -> str | None:
    match = _ARN_ACCOUNT.match(arn)
    return match.group(1) if match else None


def caller_account(sts: STSClient) -> str:
    account = sts.get_caller_identity().get("Account")
    if not isinstance(account, str) or not ACCOUNT_ID_PATTERN.fullmatch(account):
        raise InvalidResponseError("GetCallerIdentity answered without a 12-digit account id")
    return account


def provisioned_limit(
    client: CognitoIdentityProviderClient, category: str = RESOURCE_READ
) -> ProvisionedLimit:
    answer = client.get_provisioned_limit(
        LimitDefinition={"LimitClass": "API_CATEGORY", "Attributes": {"Category": category}}
    )
    limit = answer.get("Limit")
    provisioned = limit.get("ProvisionedLimitValue") if isinstance(limit, dict) else None
    free = limit.get("FreeLimitValue") if isinstance(limit, dict) else None
    if not _is_rate(provisioned):
        raise InvalidResponseError(
            "GetProvisionedLimit answered without a limit of 1 to 1,000,000 requests a second"
        )
    return ProvisionedLimit(float(provisioned), float(free) if _is_rate(free) else None)


def _is_rate(value: object) -> bool:
    # below one request a second no pool could be read: an answer to distrust, not a rate
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 1 <= value <= 1_000_000
    )
