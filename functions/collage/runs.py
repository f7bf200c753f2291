"""Turn a trigger (an S3 upload event or an SQS message) into a run: the execution's name and input.

The execution name is derived from the input (the CSV's name or the message id, plus a short
hash of the upload's identity: bucket, key, version, ETag and the event's time to the second),
so the same upload announced twice (EventBridge delivers at least once; a copy of the event may
carry a new id and sequencer) asks for the same execution name, and Step Functions starts it
only once. The same content uploaded again later is a new run; within the same second it is
the same content at the same time, and one run of it is what is wanted.
The run's timestamp comes from the event too, with the name's digest after it: a re-run of the
same event rewrites the same output keys, and two uploads of one key within a second (one
timestamp) still write keys of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from collage.config import ConfigError, ProcessingConfig, build_config
from collage.contracts import CsvMessage, ExecutionInput, MapSettings, Run
from collage.layout import CSV_PREFIX, inbox_key, output_prefix, temp_prefix
from collage.naming import (
    EXECUTION_DIGEST,
    clean_prefix,
    csv_stem,
    execution_name,
    run_timestamp,
)
from collage.validation import describe

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

MAX_MESSAGE_CSV_BYTES = 1024 * 1024  # SQS's own ceiling for a message body is 1 MiB


def run_stamp(moment: datetime, name: str) -> str:
    """The TIMESTAMP of a run's keys: `20250119T103000Z-f0c56ed377`, the event's time and the
    digest that ends the execution name (so a report also names its execution)."""
    return f"{run_timestamp(moment)}-{name[-EXECUTION_DIGEST:]}"


class MessageError(ValueError):
    """An SQS message that can never start a run (it goes to the DLQ after the receive limit)."""


@dataclass(frozen=True)
class RunRequest:
    name: str  # execution name, also the run id
    trigger: Literal["s3", "sqs"]
    source_bucket: str
    source_key: str
    timestamp: str
    output_prefix: str  # ends with "collages/"
    config: ProcessingConfig
    csv_data: bytes | None = None  # CSV carried by a message: stored at source_key first
    source_etag: str | None = None  # the upload's ETag (see Run.source_etag)

    def execution_input(self, settings: MapSettings) -> dict[str, Any]:
        run = Run(
            id=self.name,
            trigger=self.trigger,
            source_bucket=self.source_bucket,
            source_key=self.source_key,
            source_etag=self.source_etag,
            csv_name=csv_stem(self.source_key),
            timestamp=self.timestamp,
            output_prefix=self.output_prefix,
            temp_prefix=temp_prefix(self.name),
        )
        return ExecutionInput(run=run, config=self.config, map=settings).model_dump(mode="json")


def run_from_s3_event(
    event: S3EventNotificationEventBridgeModel,
    defaults: ProcessingConfig,
    key: str | None = None,
) -> RunRequest | None:
    """The run for an EventBridge "Object Created" event, or None for objects that are not CSVs.
    `key`: the object's key when the event's reads differently (URL-encoded: event_keys)."""
    bucket, obj = event.detail.bucket.name, event.detail.object
    key = obj.key if key is None else key
    if not key.startswith(CSV_PREFIX) or not key.lower().endswith(".csv"):
        return None
    moment = run_timestamp(event.time)
    identity = "|".join(str(part) for part in (bucket, key, obj.version_id, obj.etag, moment))
    stem_path = key[: -len(".csv")]
    name = execution_name(csv_stem(key), identity)
    return RunRequest(
        name=name,
        trigger="s3",
        source_bucket=bucket,
        source_key=key,
        timestamp=run_stamp(event.time, name),
        output_prefix=output_prefix("s3", clean_prefix(stem_path)),
        config=defaults,
        source_etag=obj.etag.strip('"') if obj.etag else None,
    )


def parse_message(body: str) -> CsvMessage:
    """The message's CSV and settings, or MessageError naming what is wrong with it."""
    from pydantic import ValidationError

    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_CSV_BYTES:
        raise MessageError(
            f"message body is {size:,} bytes, larger than the limit of "
            f"{MAX_MESSAGE_CSV_BYTES:,} bytes (SQS's own ceiling)"
        )
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as error:  # also a 5,000-digit number, deep nesting
        reason = str(error).split(";")[0][:120]
        raise MessageError(f"message body is not valid JSON: {reason}") from None
    if not isinstance(document, dict):
        raise MessageError("message body must be a JSON object")
    try:
        return CsvMessage.model_validate(document)
    except ValidationError as error:
        raise MessageError(describe(error)) from None


def message_execution_name(message_id: str) -> str:
    """The execution an SQS message starts (a sender can follow it by its message id)."""
    return execution_name(f"sqs-{message_id}", f"sqs|{message_id}")


def run_from_message(
    message_id: str,
    body: str,
    sent_at: datetime,
    input_bucket: str,
    defaults: ProcessingConfig,
) -> RunRequest:
    """The run for one SQS message; raises MessageError naming what is wrong with it."""
    message = parse_message(body)
    try:
        config = build_config(message.processing_config, base=defaults)
    except ConfigError as error:
        raise MessageError(f"processing_config: {error}") from None
    name = message_execution_name(message_id)
    return RunRequest(
        name=name,
        trigger="sqs",
        source_bucket=input_bucket,
        source_key=inbox_key(name),
        timestamp=run_stamp(sent_at, name),
        output_prefix=output_prefix("sqs", message.output_prefix),
        config=config,
        csv_data=message.csv_data.encode(),
    )
