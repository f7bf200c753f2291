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
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

from collage.handlers._runtime import (
    FunctionEnvironment,
    LambdaHandler,
    Name,
    Runtime,
    logger,
    metrics,
    tracer,
)
from collage.runs import MessageError, run_from_message
from collage.starter import start_run


class Environment(FunctionEnvironment):
    """The variables this handler reads (template.yaml sets them)."""

    STATE_MACHINE_ARN: Name
    INPUT_BUCKET: Name


def make_handler(runtime: Runtime) -> LambdaHandler:
    # A batch whose every message is refused is still a normal response (all in
    # batchItemFailures), not a Lambda error: bad messages reach the DLQ either way and must
    # not page anyone twice.
    processor = BatchProcessor(
        event_type=EventType.SQS, model=SqsRecordModel, raise_on_entire_batch_failure=False
    )

    @tracer.capture_method
    def start_one(record: SqsRecordModel) -> dict[str, Any]:
        logger.remove_keys(["run_id"])  # the previous message's run is not this one's
        sent_at = record.attributes.SentTimestamp or datetime.now(UTC)
        try:
            request = run_from_message(
                record.messageId, str(record.body), sent_at, runtime.input_bucket, runtime.defaults
            )
        except MessageError as error:
            logger.warning(
                "message refused", extra={"message_id": record.messageId, "reason": str(error)}
            )
            raise
        logger.append_keys(run_id=request.name)
        return start_run(request, runtime.store, runtime.state_machine_arn, runtime.map_settings)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = process_partial_response(
            event=event, record_handler=start_one, processor=processor, context=context
        )
        return dict(response)

    return handler


handler = make_handler(Runtime.from_environment(Environment))
