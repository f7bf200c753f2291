"""Collage task: one creator per invocation (a Distributed Map child)."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.collage_task import process_creator, summarise
from collage.handlers._runtime import logger, metrics, settings, tracer

# Time kept back from the Lambda timeout to upload the collage and record the result.
FINISH_MARGIN_SECONDS = 15.0


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run, item = event["run"], event["item"]
    logger.append_keys(run_id=run["id"], creator=item["creator"])
    env = settings()
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 900.0
    record = process_creator(
        item,
        run,
        event["config"],
        output_bucket=env.output_bucket,
        temp_bucket=env.temp_bucket,
        allow_loopback=env.allow_loopback,
        allowed_host_suffixes=env.allowed_host_suffixes,
        deadline=time.monotonic() + max(remaining - FINISH_MARGIN_SECONDS, 1.0),
    )
    if not record.get("skipped"):
        metrics.add_metric(
            name="CollagesCreated", unit=MetricUnit.Count, value=len(record["collages"])
        )
        metrics.add_metric(
            name="CoversDownloaded", unit=MetricUnit.Count, value=record["covers_ok"]
        )
        metrics.add_metric(
            name="CoversFailed", unit=MetricUnit.Count, value=record["covers_failed"]
        )
        metrics.add_metric(
            name="BytesDownloaded", unit=MetricUnit.Bytes, value=record["bytes_downloaded"]
        )
        metrics.add_metric(
            name="RenderTime", unit=MetricUnit.Milliseconds, value=record["render_seconds"] * 1000
        )
    logger.info(
        "creator done", extra={"status": record["status"], "failed": record["covers_failed"]}
    )
    return summarise(record)
