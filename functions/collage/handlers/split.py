"""Split step: CSV -> one map item per creator (see collage.split_task)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from collage.contracts import SplitEvent, parse_event
from collage.handlers._runtime import (
    FunctionEnvironment,
    LambdaHandler,
    Name,
    Runtime,
    logger,
    metrics,
    tracer,
)
from collage.split_task import split_run


class Environment(FunctionEnvironment):
    """The variables this handler reads (template.yaml sets them)."""

    TEMP_BUCKET: Name


def make_handler(runtime: Runtime) -> LambdaHandler:
    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        request: SplitEvent = parse_event(SplitEvent, event, "split")
        logger.append_keys(run_id=request.run.id)
        summary = split_run(
            request.run, request.config, runtime.store, temp_bucket=runtime.temp_bucket
        )
        metrics.add_metric(
            name="CsvRowsRejected", unit=MetricUnit.Count, value=summary.rows_rejected
        )
        metrics.add_metric(name="Creators", unit=MetricUnit.Count, value=summary.creators)
        logger.info("split done", extra=summary.model_dump())
        return summary.model_dump()

    return handler


handler = make_handler(Runtime.from_environment(Environment))
