"""Aggregate step: the run report, the archived (or failed/) CSV, the execution's summary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.aggregate import finish_run
from collage.handlers._runtime import logger, metrics, settings, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    run = event["run"]
    logger.append_keys(run_id=run["id"])
    env = settings()
    error, stage = event.get("error"), None
    if event.get("split_error"):
        error, stage = event["split_error"], "split"
    elif event.get("map_error"):
        error, stage = event["map_error"], "map"
    elif event.get(
        "aggregate_error"
    ):  # RecordAggregateFailure: the report without the map's results
        error, stage = event["aggregate_error"], "aggregate"
    summary = finish_run(
        run,
        event.get("config", {}),
        event.get("split"),
        input_bucket=env.input_bucket,
        output_bucket=env.output_bucket,
        temp_bucket=env.temp_bucket,
        error=error,
        failed_stage=stage,
        map_result=event.get("map_result"),
    )
    metrics.add_metric(
        name="RunsFailed", unit=MetricUnit.Count, value=int(summary["status"] == "failed")
    )
    logger.info("run finished", extra={"status": summary["status"], "report": summary["report"]})
    return summary
