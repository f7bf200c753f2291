"""Aggregate step: the run report, the archived (or failed/) CSV, the execution's summary."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.aggregate import finish_run
from collage.contracts import AggregateEvent, parse_event
from collage.handlers._runtime import (
    FunctionEnvironment,
    LambdaHandler,
    Name,
    Runtime,
    logger,
    metrics,
    tracer,
)


class Environment(FunctionEnvironment):
    """The variables this handler reads (template.yaml sets them)."""

    INPUT_BUCKET: Name
    OUTPUT_BUCKET: Name
    TEMP_BUCKET: Name


def make_handler(runtime: Runtime) -> LambdaHandler:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        request: AggregateEvent = parse_event(AggregateEvent, event, "aggregate")
        logger.append_keys(run_id=request.run.id)
        summary = finish_run(
            request,
            runtime.store,
            input_bucket=runtime.input_bucket,
            output_bucket=runtime.output_bucket,
            temp_bucket=runtime.temp_bucket,
        )
        failed = int(summary.status == "failed")
        metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=failed)
        logger.info("run finished", extra={"status": summary.status, "report": summary.report})
        return summary.model_dump(mode="json")

    return handler


handler = make_handler(Runtime.from_environment(Environment))
