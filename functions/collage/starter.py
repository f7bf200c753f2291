"""Start a run: keep a message's CSV data in the input bucket, then start the named execution."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from collage import aws
from collage.runs import MapSettings, RunRequest


def map_settings_from_env(environ: Mapping[str, str] | None = None) -> MapSettings:
    env = os.environ if environ is None else environ
    return MapSettings(
        max_concurrency=int(env.get("MAP_MAX_CONCURRENCY") or MapSettings.max_concurrency),
        tolerated_failure_percentage=float(
            env.get("MAP_TOLERATED_FAILURE_PERCENTAGE") or MapSettings.tolerated_failure_percentage
        ),
    )


def start_run(
    request: RunRequest, state_machine_arn: str, map_settings: MapSettings
) -> dict[str, Any]:
    """Idempotent: the same request twice stores the same object and starts one execution."""
    if request.csv_data is not None:
        aws.put_bytes(
            request.source_bucket, request.source_key, request.csv_data, "text/csv; charset=utf-8"
        )
    started = aws.start_execution(
        state_machine_arn, request.name, request.execution_input(map_settings)
    )
    return {"name": request.name, **started}
