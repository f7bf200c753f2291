"""One creator's collage: download its covers, render the grid, store the pages and a result record.

The result record (in the run's temp area) is what the aggregator reads; it also makes the task
idempotent: a retried or redriven task whose creator already has a result does nothing again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from collage.aws import Store
from collage.contracts import CreatorSummary, MapItem, RenderEvent, Run
from collage.engine.fetch_policy import FetchPolicy
from collage.engine.url_guard import AddressGuard, scrub_url
from collage.errors import TransientError, is_transient
from collage.naming import safe_segment

DONE_STATUSES = ("ok", "partial")
THUMBNAIL_WIDTH = 216  # pixels: the run's contact sheet shows page 1 this wide (a few KB)
THUMBNAILS = "thumbs/"  # beside the collages; no creator's key segment holds a "/"


def collage_keys(output_prefix: str, name: str, timestamp: str, pages: int) -> list[str]:
    """`alice_20250119T103000Z.jpg`, then `alice_20250119T103000Z_p2.jpg`, ... for extra pages."""
    stem = f"{output_prefix}{name}_{timestamp}"
    return [f"{stem}.jpg" if page == 1 else f"{stem}_p{page}.jpg" for page in range(1, pages + 1)]


def thumbnail_key(output_prefix: str, name: str, timestamp: str) -> str:
    """`thumbs/alice_20250119T103000Z.jpg` beside the collages: page 1, small."""
    return f"{output_prefix}{THUMBNAILS}{name}_{timestamp}.jpg"


def result_key(run: Run, name: str) -> str:
    return f"{run.temp_prefix}results/{name}.json"


def summarise(record: Mapping[str, Any]) -> CreatorSummary:
    """The small value a map child returns (the full record stays in S3)."""
    return CreatorSummary(
        creator=record["creator"],
        status=record["status"],
        collages=len(record["collages"]),
        covers_failed=record["covers_failed"],
    )


def process_creator(
    request: RenderEvent,
    store: Store,
    *,
    output_bucket: str,
    temp_bucket: str,
    address_guard: AddressGuard,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Render and store one creator's collage; return the full result record."""
    item = request.item
    name = item.name or safe_segment(item.creator)
    record_key = result_key(request.run, name)
    previous = store.get_json(temp_bucket, record_key)
    if previous and previous.get("status") in DONE_STATUSES:
        return {**previous, "skipped": True}

    try:
        policy = FetchPolicy.from_config(request.config, address_guard)
        record = _render_and_store(request, name, store, output_bucket, policy, deadline)
    except Exception as error:
        if is_transient(error):
            raise TransientError(f"{type(error).__name__}: {error}") from error
        # A bug or an unexpected input: recorded for the report, not retried.
        record = failed_record(item.creator, name, f"{type(error).__name__}: {error}")
    store.put_json(temp_bucket, record_key, record)
    return record


def failed_record(creator: str, name: str, reason: str) -> dict[str, Any]:
    """The result record of a creator without a collage (also used by the aggregator)."""
    return {
        "creator": creator,
        "name": name,
        "status": "failed",
        "error": reason,
        "collages": [],
        "thumbnail": None,
        "covers": 0,
        "covers_ok": 0,
        "covers_failed": 0,
        "covers_cut": 0,
        "failures": [],
        "bytes_downloaded": 0,
        "download_seconds": 0.0,
        "render_seconds": 0.0,
    }


def _render_and_store(
    request: RenderEvent,
    name: str,
    store: Store,
    output_bucket: str,
    policy: FetchPolicy,
    deadline: float | None,
) -> dict[str, Any]:
    item, run, config = request.item, request.run, request.config
    # Imported here, not at the top: the aggregate step imports this module for
    # failed_record and carries no Pillow.
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
    keys = collage_keys(run.output_prefix, name, run.timestamp, len(result.pages))
    metadata = {"run-id": run.id, "creator": quote(name)}
    for key, page in zip(keys, result.pages, strict=True):
        store.put_bytes(output_bucket, key, page, "image/jpeg", Metadata=metadata)
    thumbnail = None
    if result.thumbnail is not None:
        thumbnail = thumbnail_key(run.output_prefix, name, run.timestamp)
        store.put_bytes(output_bucket, thumbnail, result.thumbnail, "image/jpeg", Metadata=metadata)
    failures = [_failure(item, outcome) for outcome in result.failed]
    if not result.pages:
        status = "failed"
    elif failures:
        status = "partial"
    else:
        status = "ok"
    return {
        "creator": item.creator,
        "name": name,
        "status": status,
        "error": "no cover could be rendered" if status == "failed" else None,
        "collages": keys,
        "thumbnail": thumbnail,
        "covers": len(item.urls),
        "covers_ok": len(item.urls) - len(failures),
        "covers_failed": len(failures),
        "covers_cut": item.cut,
        "failures": failures,
        "bytes_downloaded": result.bytes_downloaded,
        "download_seconds": round(result.download_seconds, 3),
        "render_seconds": round(result.render_seconds, 3),
    }


def _failure(item: MapItem, outcome: Any) -> dict[str, Any]:
    """A cover that failed, for the report: its CSV line, the URL (scrubbed), code and reason."""
    return {
        "line": item.lines[outcome.index] if outcome.index < len(item.lines) else None,
        "url": scrub_url(outcome.source),  # no credentials or signatures in reports
        "code": outcome.error_code,
        "error": outcome.error,
    }
