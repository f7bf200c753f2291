"""What AWS hands a Lambda function, in AWS's shapes, for the local stack and the tests: the
"Object Created" event S3 sends through EventBridge, SQS messages as ReceiveMessage returns them
and as records of Lambda's SQS event, and the context object handlers read.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"


class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str, timeout: float, memory: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._ends - time.monotonic()) * 1000), 0)


def s3_object_created_event(
    bucket: str, key: str, size: int, etag: str, reason: str = "PutObject"
) -> dict[str, Any]:
    """The EventBridge event S3 sends for a new object, in AWS's shape (`reason`: the request
    that created it: PutObject, CopyObject, CompleteMultipartUpload, ...)."""
    now = datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size, "etag": etag, "sequencer": f"{time.time_ns():X}"},
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": ACCOUNT,
            "source-ip-address": "127.0.0.1",
            "reason": reason,
        },
    }


def received_message(
    message_id: str, body: str, sent_ms: int = 1737282600000, receive_count: int = 1
) -> dict[str, Any]:
    """A message as ReceiveMessage returns it, with the attributes SQS always gives Lambda."""
    return {
        "MessageId": message_id,
        "ReceiptHandle": f"handle-{message_id}",
        "Body": body,
        "Attributes": {
            "SentTimestamp": str(sent_ms),
            "ApproximateReceiveCount": str(receive_count),
            "ApproximateFirstReceiveTimestamp": str(sent_ms + 5),
            "SenderId": "AIDAEXAMPLE",
        },
    }


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """A received SQS message as a record of Lambda's SQS event."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }
