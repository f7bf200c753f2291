"""One creator's collage: download its covers, render the grid, store the pages and a result record.

The result record (in the run's temp area) is what the aggregator reads; it also makes the task
idempotent: a retried or redriven task whose creator already has a result does nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from collage.aws import Store
from collage.contracts import (
    CoverFailure,
    CreatorResult,
    CreatorStatus,
    MapItem,
    RenderEvent,
)
from collage.engine.fetch_policy import FetchPolicy
from collage.engine.url_guard import AddressGuard, scrub_url
from collage.errors import TransientError, is_transient
from collage.layout import RunLayout
from collage.naming import safe_segment

THUMBNAIL_WIDTH = 216  # pixels: the run's contact sheet shows page 1 this wide (5-15 KB)


@dataclass(frozen=True)
class CreatorOutcome:
    result: CreatorResult
    skipped: bool = False  # an earlier attempt had done it: nothing was rendered now


def process_creator(
    request: RenderEvent,
    store: Store,
    *,
    output_bucket: str,
    temp_bucket: str,
    address_guard: AddressGuard,
    deadline: float | None = None,
) -> CreatorOutcome:
    """Render and store one creator's collage and its result record."""
    item = request.item
    name = item.name or safe_segment(item.creator)
    record_key = RunLayout(request.run).result(name)
    earlier = _earlier_result(store.get_json(temp_bucket, record_key))
    if earlier and earlier.done:
        return CreatorOutcome(earlier, skipped=True)

    try:
        policy = FetchPolicy.from_config(request.config, address_guard)
        result = _render_and_store(request, name, store, output_bucket, policy, deadline)
    except Exception as error:
        if is_transient(error):
            raise TransientError(f"{type(error).__name__}: {error}") from error
        # A bug or an unexpected input: recorded for the report, not retried.
        result = CreatorResult.failed(item.creator, name, f"{type(error).__name__}: {error}")
    store.put_json(temp_bucket, record_key, result.model_dump(mode="json"))
    return CreatorOutcome(result)


def _earlier_result(record: Any) -> CreatorResult | None:
    """An earlier attempt's result; None when there is none or it cannot be read (then the
    creator is rendered again and the record rewritten)."""
    from pydantic import ValidationError

    try:
        return CreatorResult.model_validate(record) if record else None
    except ValidationError:
        return None


def _render_and_store(
    request: RenderEvent,
    name: str,
    store: Store,
    output_bucket: str,
    policy: FetchPolicy,
    deadline: float | None,
) -> CreatorResult:
    item, run, config = request.item, request.run, request.config
    # Imported here, not at the top: the aggregate step imports the contracts and carries no
    # Pillow; neither does a test of this module's bookkeeping.
    from collage.engine.pipeline import build_collage
    from collage.engine.render import Layout

    result = build_collage(
        item.urls,
        Layout.from_config(config),
        policy=policy,
        max_workers=config.max_workers,
        deadline=deadline,
        thumbnail_width=THUMBNAIL_WIDTH,
    )
    keys = RunLayout(run)
    collages = keys.collages(name, len(result.pages))
    metadata = {"run-id": run.id, "creator": quote(name)}
    for key, page in zip(collages, result.pages, strict=True):
        store.put_bytes(output_bucket, key, page, "image/jpeg", Metadata=metadata)
    thumbnail = None
    if result.thumbnail is not None:
        thumbnail = keys.thumbnail(name)
        store.put_bytes(output_bucket, thumbnail, result.thumbnail, "image/jpeg", Metadata=metadata)
    failures = [_failure(item, outcome) for outcome in result.failed]
    status: CreatorStatus = "failed" if not result.pages else "partial" if failures else "ok"
    return CreatorResult(
        creator=item.creator,
        name=name,
        status=status,
        error="no cover could be rendered" if status == "failed" else None,
        collages=collages,
        thumbnail=thumbnail,
        covers=len(item.urls),
        covers_ok=len(item.urls) - len(failures),
        covers_failed=len(failures),
        covers_cut=item.cut,
        failures=failures,
        bytes_downloaded=result.bytes_downloaded,
        download_seconds=round(result.download_seconds, 3),
        render_seconds=round(result.render_seconds, 3),
    )


def _failure(item: MapItem, outcome: Any) -> CoverFailure:
    """A cover that failed, for the report: its CSV line, the URL (scrubbed), code and reason."""
    return CoverFailure(
        line=item.lines[outcome.index] if outcome.index < len(item.lines) else None,
        url=scrub_url(outcome.source),  # no credentials or signatures in reports
        code=outcome.error_code,
        error=outcome.error,
    )
