"""Collage task: one creator per invocation (a Distributed Map child)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.collage_task import process_creator
from collage.contracts import CreatorResult, RenderEvent, parse_event
from collage.handlers._runtime import (
    FunctionEnvironment,
    LambdaHandler,
    Name,
    Runtime,
    logger,
    metrics,
    tracer,
)

# Time kept back from the Lambda timeout to upload the collage and record the result.
FINISH_MARGIN_SECONDS = 15.0


class Environment(FunctionEnvironment):
    """The variables this handler reads (template.yaml sets them)."""

    OUTPUT_BUCKET: Name
    TEMP_BUCKET: Name


def _record_metrics(result: CreatorResult) -> None:
    counts = {
        "CollagesCreated": (len(result.collages), MetricUnit.Count),
        "CoversDownloaded": (result.covers_ok, MetricUnit.Count),
        "CoversFailed": (result.covers_failed, MetricUnit.Count),
        "BytesDownloaded": (result.bytes_downloaded, MetricUnit.Bytes),
        "RenderTime": (result.render_seconds * 1000, MetricUnit.Milliseconds),
    }
    for name, (value, unit) in counts.items():
        metrics.add_metric(name=name, unit=unit, value=value)


def make_handler(runtime: Runtime) -> LambdaHandler:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        request: RenderEvent = parse_event(RenderEvent, event, "render")
        logger.append_keys(run_id=request.run.id, creator=request.item.creator)
        remaining = context.get_remaining_time_in_millis() / 1000
        outcome = process_creator(
            request,
            runtime.store,
            output_bucket=runtime.output_bucket,
            temp_bucket=runtime.temp_bucket,
            address_guard=runtime.address_guard,
            deadline=time.monotonic() + max(remaining - FINISH_MARGIN_SECONDS, 1.0),
        )
        result = outcome.result
        if not outcome.skipped:
            _record_metrics(result)
        logger.info("creator done", extra={"status": result.status, "failed": result.covers_failed})
        return result.summary().model_dump()

    return handler


handler = make_handler(Runtime.from_environment(Environment))
