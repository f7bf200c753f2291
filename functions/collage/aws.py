"""The one small layer that talks to AWS (S3 and Step Functions), through boto3.

`Store` is built with its clients where a handler or a tool is wired up; logic functions take
it as an argument and know nothing of boto3. Default clients are made on first use (boto3 is
imported only then) with botocore's `adaptive` retry mode, which retries throttling and 5xx
responses with backoff and client-side rate limiting, so S3 throttling under a wide map fan-out
slows tasks down instead of failing them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

TOTAL_ATTEMPTS = 9  # one call and up to 8 retries
_MISSING = ("404", "NoSuchKey", "NotFound")
_CHANGED = ("412", "PreconditionFailed")  # an If-Match that the object's ETag no longer meets


def make_client(service: str, **options: Any) -> Any:
    """A boto3 client with adaptive retries (options: endpoint_url, region_name, ...)."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "adaptive"})
    return boto3.client(service, config=config, **options)  # type: ignore[call-overload]


def is_missing(error: Exception) -> bool:
    """True for S3's "no such key" in its several spellings."""
    response = getattr(error, "response", None) or {}
    return response.get("Error", {}).get("Code") in _MISSING


def error_code(error: Exception) -> str:
    """The service's error code (`NoSuchKey`, `AccessDenied`, `403` for a HEAD), or ""."""
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_denied(error: Exception) -> bool:
    """True for S3's 403: no permission, or a missing key the caller may not list."""
    return error_code(error) in ("AccessDenied", "403")


def is_changed(error: Exception) -> bool:
    """True for S3's "precondition failed": the object is no longer the one an ETag named."""
    return error_code(error) in _CHANGED


class Store:
    """S3 objects and Step Functions executions, through the clients it was given."""

    def __init__(self, s3: S3Client | None = None, sfn: SFNClient | None = None) -> None:
        if s3 is not None:
            self.s3 = s3
        if sfn is not None:
            self.sfn = sfn

    @cached_property
    def s3(self) -> S3Client:
        return make_client("s3")

    @cached_property
    def sfn(self) -> SFNClient:
        return make_client("stepfunctions")

    def open_object(self, bucket: str, key: str) -> IO[bytes]:
        """A streaming body: read in chunks, never loaded whole."""
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"]  # type: ignore[return-value]

    def head_object(self, bucket: str, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return dict(self.s3.head_object(Bucket=bucket, Key=key))
        except ClientError as error:
            if is_missing(error):
                return None
            raise

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str, **extra: Any
    ) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)

    def put_json(self, bucket: str, key: str, document: Any) -> None:
        body = json.dumps(document, ensure_ascii=False, indent=1, default=str).encode()
        self.put_bytes(bucket, key, body, "application/json")

    def get_json(self, bucket: str, key: str) -> Any | None:
        """The parsed JSON object at bucket/key, or None if there is none."""
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as error:
            if is_missing(error):
                return None
            raise
        with body:
            return json.load(body)

    def upload_file(self, path: str, bucket: str, key: str, content_type: str) -> None:
        """Multipart upload for large files (the split's item list, an exported CSV)."""
        self.s3.upload_file(path, bucket, key, ExtraArgs={"ContentType": content_type})

    def upload_stream(
        self, parts: list[IO[bytes]], bucket: str, key: str, content_type: str
    ) -> None:
        """The parts, one after another, as one object: uploaded in parts, never held whole."""
        stream = io.BufferedReader(_Chain(parts))
        self.s3.upload_fileobj(stream, bucket, key, ExtraArgs={"ContentType": content_type})

    def iter_lines(self, bucket: str, key: str) -> Iterator[bytes]:
        """The object's non-empty lines, streamed."""
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        with body:
            yield from filter(None, body.iter_lines())

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def copy_object(
        self, bucket: str, key: str, dest_bucket: str, dest_key: str, if_match: str | None = None
    ) -> None:
        """A server-side copy (in parts when large): nothing passes through this process.
        With `if_match`, only while the source has that ETag (else is_changed's error)."""
        extra = {"CopySourceIfMatch": _quoted(if_match)} if if_match else None
        self.s3.copy({"Bucket": bucket, "Key": key}, dest_bucket, dest_key, ExtraArgs=extra)

    def delete_object(self, bucket: str, key: str, if_match: str | None = None) -> bool:
        """Delete the object; with `if_match`, only while it has that ETag (a later upload to
        the key is left alone). False when it was not deleted for that reason."""
        from botocore.exceptions import ClientError

        try:
            if if_match:
                self.s3.delete_object(Bucket=bucket, Key=key, IfMatch=_quoted(if_match))
            else:
                self.s3.delete_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if is_changed(error) or is_missing(error):
                return False
            raise
        return True

    def start_execution(self, state_machine_arn: str, name: str, document: Any) -> dict[str, Any]:
        """Start a named execution; the same name twice (a redelivered event) starts nothing new.

        Returns {"executionArn", "started": bool}. AWS returns the running execution for the
        same name and input, and ExecutionAlreadyExists once it has finished: both mean
        "already done".
        """
        try:
            response = self.sfn.start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(document)
            )
        except self.sfn.exceptions.ExecutionAlreadyExists:
            arn = state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + name
            return {"executionArn": arn, "started": False}
        return {"executionArn": response["executionArn"], "started": True}


def _quoted(etag: str) -> str:
    """An ETag as HTTP quotes it (S3 takes both forms; moto's HeadObject only this one)."""
    return etag if etag.startswith('"') else f'"{etag}"'


class _Chain(io.RawIOBase):
    """Readable files, one after another, as one."""

    def __init__(self, parts: list[IO[bytes]]) -> None:
        self.parts = list(parts)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.parts:
            count = self.parts[0].readinto(buffer)  # type: ignore[attr-defined]
            if count:
                return count
            self.parts.pop(0)
        return 0
