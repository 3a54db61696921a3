"""The baseline: what a first exporter would do. One default boto3 client, every pool and every
page one after another, boto3's own datetime parsing, no memory between scrapes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import boto3

from bench.world import ACCESS_KEY_ID, SECRET_ACCESS_KEY, counts_of
from exporter.demo.model import PoolCounts


def scrape_sequentially(
    endpoint_url: str, region: str, pool_ids: Sequence[str]
) -> dict[str, PoolCounts]:
    client = boto3.client(
        "cognito-idp",
        region_name=region,
        endpoint_url=endpoint_url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    results = {}
    for pool_id in pool_ids:
        statuses: Counter[str] = Counter()
        users: Counter[str] = Counter()
        page = client.list_user_import_jobs(UserPoolId=pool_id, MaxResults=60)
        while True:
            for job in page["UserImportJobs"]:
                statuses[job.get("Status", "")] += 1
                users["imported"] += job.get("ImportedUsers", 0)
                users["skipped"] += job.get("SkippedUsers", 0)
                users["failed"] += job.get("FailedUsers", 0)
            token = page.get("PaginationToken")
            if not token:
                break
            page = client.list_user_import_jobs(
                UserPoolId=pool_id, MaxResults=60, PaginationToken=token
            )
        results[pool_id] = counts_of(statuses, users)
    return results
