"""Split step: CSV -> one map item per creator (see collage.split_task)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.handlers._runtime import logger, metrics, settings, tracer
from collage.split_task import split_run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run = event["run"]
    logger.append_keys(run_id=run["id"])
    summary = split_run(run, event["config"], temp_bucket=settings().temp_bucket)
    metrics.add_metric(
        name="CsvRowsRejected", unit=MetricUnit.Count, value=summary["rows_rejected"]
    )
    metrics.add_metric(name="Creators", unit=MetricUnit.Count, value=summary["creators"])
    logger.info("split done", extra=summary)
    return summary
