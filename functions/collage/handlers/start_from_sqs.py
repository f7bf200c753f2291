"""SQS messages carrying CSV data -> one named execution each; bad messages fail alone.

Partial batch responses: a message that cannot start a run is reported in
`batchItemFailures`, returns to the queue, and reaches the DLQ after the receive limit,
while the other messages of the batch go on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from collage.config import config_from_env
from collage.handlers._runtime import logger, metrics, settings, tracer
from collage.runs import run_from_message
from collage.starter import map_settings_from_env, start_run

# A batch whose every message is refused is still a normal response (all in batchItemFailures),
# not a Lambda error: bad messages reach the DLQ either way and must not page anyone twice.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def start_one(record: SQSRecord) -> dict[str, Any]:
    env = settings()
    sent_ms = int(record.raw_event.get("attributes", {}).get("SentTimestamp") or 0)
    sent_at = datetime.fromtimestamp(sent_ms / 1000, UTC) if sent_ms else datetime.now(UTC)
    try:
        request = run_from_message(
            record.message_id, record.body, sent_at, env.input_bucket, config_from_env()
        )
    except ValueError as error:
        logger.warning(
            "message refused", extra={"message_id": record.message_id, "reason": str(error)}
        )
        raise
    logger.append_keys(run_id=request.name)
    return start_run(request, env.state_machine_arn, map_settings_from_env())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=start_one, processor=processor, context=context
    )
