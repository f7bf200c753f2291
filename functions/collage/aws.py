"""The one small layer that talks to AWS (S3 and Step Functions), through boto3.

Clients are created lazily (boto3 is imported only when first needed) with botocore's
`adaptive` retry mode, which retries throttling and 5xx responses with backoff and client-side
rate limiting, so S3 throttling under a wide map fan-out slows tasks down instead of failing them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import IO, Any

TOTAL_ATTEMPTS = 9  # one call and up to 8 retries


@cache
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "adaptive"})
    return boto3.client(service, config=config)


def reset_clients() -> None:
    """Forget cached clients (tests and the local emulator start fresh mocks)."""
    client.cache_clear()


def open_object(bucket: str, key: str) -> IO[bytes]:
    """A streaming body: read in chunks, never loaded whole."""
    return client("s3").get_object(Bucket=bucket, Key=key)["Body"]


def head_object(bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def put_bytes(bucket: str, key: str, data: bytes, content_type: str, **extra: Any) -> None:
    client("s3").put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)


def put_json(bucket: str, key: str, document: Any) -> None:
    body = json.dumps(document, ensure_ascii=False, indent=1, default=str).encode()
    put_bytes(bucket, key, body, "application/json")


def get_json(bucket: str, key: str) -> Any | None:
    """The parsed JSON object at bucket/key, or None if there is none."""
    from botocore.exceptions import ClientError

    try:
        body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    with body:
        return json.load(body)


def upload_file(path: str, bucket: str, key: str, content_type: str) -> None:
    """Multipart upload for large files (the split's item list)."""
    client("s3").upload_file(path, bucket, key, ExtraArgs={"ContentType": content_type})


def list_keys(bucket: str, prefix: str) -> list[str]:
    paginator = client("s3").get_paginator("list_objects_v2")
    return [
        item["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]


def copy_object(bucket: str, key: str, dest_bucket: str, dest_key: str) -> None:
    """A server-side copy (in parts when large): nothing passes through this process."""
    client("s3").copy({"Bucket": bucket, "Key": key}, dest_bucket, dest_key)


def move_object(bucket: str, key: str, dest_bucket: str, dest_key: str) -> None:
    """Copy, then delete (S3 has no rename). Moving a key that is gone already is a no-op."""
    if head_object(bucket, key) is None:
        return
    copy_object(bucket, key, dest_bucket, dest_key)
    client("s3").delete_object(Bucket=bucket, Key=key)


def start_execution(state_machine_arn: str, name: str, document: dict) -> dict:
    """Start a named execution; the same name twice (a redelivered event) starts nothing new.

    Returns {"executionArn", "started": bool}. AWS returns the running execution for the same
    name and input, and ExecutionAlreadyExists once it has finished: both mean "already done".
    """
    sfn = client("stepfunctions")
    try:
        response = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(document)
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name
        return {"executionArn": arn, "started": False}
    return {"executionArn": response["executionArn"], "started": True}
