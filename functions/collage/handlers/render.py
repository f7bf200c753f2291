"""Collage task: one creator per invocation (a Distributed Map child)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.collage_task import process_creator, summarise
from collage.contracts import RenderEvent, parse_event
from collage.handlers._runtime import LambdaHandler, Runtime, logger, metrics, tracer

# Time kept back from the Lambda timeout to upload the collage and record the result.
FINISH_MARGIN_SECONDS = 15.0


def _record_metrics(record: dict[str, Any]) -> None:
    counts = {
        "CollagesCreated": (len(record["collages"]), MetricUnit.Count),
        "CoversDownloaded": (record["covers_ok"], MetricUnit.Count),
        "CoversFailed": (record["covers_failed"], MetricUnit.Count),
        "BytesDownloaded": (record["bytes_downloaded"], MetricUnit.Bytes),
        "RenderTime": (record["render_seconds"] * 1000, MetricUnit.Milliseconds),
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
        record = process_creator(
            request,
            runtime.store,
            output_bucket=runtime.output_bucket,
            temp_bucket=runtime.temp_bucket,
            address_guard=runtime.address_guard,
            deadline=time.monotonic() + max(remaining - FINISH_MARGIN_SECONDS, 1.0),
        )
        if not record.get("skipped"):
            _record_metrics(record)
        logger.info(
            "creator done", extra={"status": record["status"], "failed": record["covers_failed"]}
        )
        return summarise(record).model_dump()

    return handler


handler = make_handler(Runtime.from_environment())
