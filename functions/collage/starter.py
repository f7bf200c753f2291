"""Start a run: keep a message's CSV data in the input bucket, then start the named execution."""

from __future__ import annotations

from typing import Any

from collage.aws import Store
from collage.runs import MapSettings, RunRequest


def start_run(
    request: RunRequest, store: Store, state_machine_arn: str, map_settings: MapSettings
) -> dict[str, Any]:
    """Idempotent: the same request twice stores the same object and starts one execution."""
    if request.csv_data is not None:
        store.put_bytes(
            request.source_bucket, request.source_key, request.csv_data, "text/csv; charset=utf-8"
        )
    started = store.start_execution(
        state_machine_arn, request.name, request.execution_input(map_settings)
    )
    return {"name": request.name, **started}
