"""EventBridge "Object Created" (a CSV under csv-files/) -> one named Step Functions execution."""

from __future__ import annotations

from typing import Any

from collage.config import config_from_env
from collage.handlers._runtime import logger, metrics, settings, tracer
from collage.runs import run_from_s3_event
from collage.starter import map_settings_from_env, start_run


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = run_from_s3_event(event, config_from_env())
    if request is None:
        key = event.get("detail", {}).get("object", {}).get("key")
        logger.info("ignored: not a CSV under csv-files/", extra={"key": key})
        return {"started": False, "ignored": key}
    logger.append_keys(run_id=request.name)
    return start_run(request, settings().state_machine_arn, map_settings_from_env())
