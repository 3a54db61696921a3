"""Links to a user pool and its import jobs in the AWS Management Console.

The console's user pool pages live under
`https://<region>.console.aws.amazon.com/cognito/v2/idp/user-pools/<pool id>`, with the region
repeated as `?region=`: the pool's overview at that path, its Users tab at `/users` (the URLs
the AWS Amplify CLI opens, aws-amplify/amplify-cli
packages/amplify-category-auth/src/provider-utils/awscloudformation/index.ts
`openUserPoolConsole`, and many CDK stacks print). Import jobs have no documented page of
their own: the Cognito Developer Guide ("Creating and running the Amazon Cognito user pool
import job") lists and opens them "in the Users tab under Import users", so a job links there.
China regions use the console at amazonaws.cn; AWS GovCloud (US) has a console of its own,
console.amazonaws-us-gov.com, with the region in `?region=` only (AWS GovCloud User Guide).
"""

from __future__ import annotations

from urllib.parse import quote

from exporter.config.schema import REGION_PATTERN, is_pool_id


def pool_url(pool_id: str, region: str) -> str | None:
    """The pool's overview page; None when the id or region cannot make a console URL."""
    return _console_url(pool_id, region, "")


def import_jobs_url(pool_id: str, region: str) -> str | None:
    """The pool's Users tab, whose Import users section lists and opens its import jobs."""
    return _console_url(pool_id, region, "/users")


def _console_url(pool_id: str, region: str, page: str) -> str | None:
    if not REGION_PATTERN.fullmatch(region) or not is_pool_id(pool_id):
        return None
    if region.startswith("us-gov-"):
        host = "console.amazonaws-us-gov.com"
    elif region.startswith("cn-"):
        host = f"{region}.console.amazonaws.cn"
    else:
        host = f"{region}.console.aws.amazon.com"
    pool = quote(pool_id, safe="")
    return f"https://{host}/cognito/v2/idp/user-pools/{pool}{page}?region={region}"
