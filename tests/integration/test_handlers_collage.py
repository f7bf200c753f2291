"""The collage task (one creator) on moto S3 with loopback covers: records, skips, failures."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from collage import aws
from collage.collage_task import CreatorOutcome, process_creator
from collage.contracts import RenderEvent, Run
from collage.errors import TransientError
from collage.layout import RunLayout
from collage_tools.cover_server import CoverServer
from collage_tools.covers import make_cover
from tests.support.s3_faults import S3Faults, fast_waits, moto_stack_buckets

TILE = (216, 384)
RUN = {
    "id": "covers-0123456789",
    "trigger": "s3",
    "source_bucket": "hs-input",
    "source_key": "csv-files/covers.csv",
    "csv_name": "covers",
    "timestamp": "20250119T103000Z",
    "output_prefix": "s3-trigger/csv-files/covers/collages/",
    "temp_prefix": "runs/covers-0123456789/",
}
CONFIG = {"rows": 2, "cols": 2, "timeout": 2, "max_retries": 0}
RECORD = RunLayout(Run(**RUN)).result("alice")  # alice's result record in the temp bucket


@pytest.fixture
def buckets(monkeypatch) -> Iterator[dict[str, str]]:
    with moto_stack_buckets(monkeypatch) as names:
        yield names


@pytest.fixture
def server() -> Iterator[CoverServer]:
    with CoverServer() as cover_server:
        for n in range(3):
            cover_server.add(f"/c/{n}.jpg", make_cover(n, TILE))
        yield cover_server


def item(server: CoverServer, creator: str = "alice", paths=("/c/0.jpg", "/c/1.jpg")) -> dict:
    from collage.naming import safe_segment

    urls = [server.url(p) for p in paths]
    return {
        "creator": creator,
        "name": safe_segment(creator),
        "urls": urls,
        "lines": list(range(2, 2 + len(urls))),
        "cut": 0,
    }


def render(buckets, work: dict) -> CreatorOutcome:
    runtime = buckets.runtime()
    return process_creator(
        RenderEvent.model_validate({"run": RUN, "item": work, "config": CONFIG}),
        runtime.store,
        output_bucket=runtime.output_bucket,
        temp_bucket=runtime.temp_bucket,
        address_guard=runtime.address_guard,
    )


def output_keys(buckets: dict[str, str]) -> list[str]:
    return sorted(buckets.store.list_keys(buckets["output"], ""))


def test_handler_stores_the_collage_and_the_result_record(buckets, server):
    from collage.handlers.render import make_handler
    from collage_tools.emulator import LambdaContext

    work = item(server, paths=("/c/0.jpg", "/c/missing.jpg"))
    handler = make_handler(buckets.runtime())
    summary = handler({"run": RUN, "item": work, "config": CONFIG}, LambdaContext("r", 60, 1024))

    assert summary == {"creator": "alice", "status": "partial", "collages": 1, "covers_failed": 1}
    key = "s3-trigger/csv-files/covers/collages/alice_20250119T103000Z.jpg"
    thumb = "s3-trigger/csv-files/covers/collages/thumbs/alice_20250119T103000Z.jpg"
    assert output_keys(buckets) == [key, thumb]
    for stored in (key, thumb):
        head = buckets.store.s3.head_object(Bucket=buckets["output"], Key=stored)
        assert head["ContentType"] == "image/jpeg"
        assert head["Metadata"] == {"run-id": RUN["id"], "creator": "alice"}
    # The contact sheet's thumbnail: page 1 at most 216 pixels wide, a few KB.
    small = buckets.store.s3.get_object(Bucket=buckets["output"], Key=thumb)["Body"].read()
    assert len(small) < 10_000
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "JPEG" and 100 < image.width <= 216
    record = buckets.store.get_json(buckets["temp"], RECORD)
    assert record["collages"] == [key] and record["thumbnail"] == thumb
    assert record["covers_ok"] == 1
    assert record["failures"] == [
        {
            "line": 3,
            "url": server.url("/c/missing.jpg"),
            "code": "http_status",
            "error": record["failures"][0]["error"],
        }
    ]


def test_a_done_creator_is_skipped_on_a_rerun(buckets, server):
    first = render(buckets, item(server)).result
    key = first.collages[0]
    etag = buckets.store.s3.head_object(Bucket=buckets["output"], Key=key)["ETag"]
    hits = server.hits.copy()

    again = render(buckets, item(server))

    assert again.skipped and again.result.status == "ok"
    assert server.hits == hits  # nothing downloaded again
    assert output_keys(buckets) == [key, first.thumbnail]
    assert buckets.store.s3.head_object(Bucket=buckets["output"], Key=key)["ETag"] == etag


def test_a_failed_creator_is_rendered_again_on_a_rerun(buckets, server):
    work = item(server, paths=("/c/late.jpg",))
    assert render(buckets, work).result.status == "failed"
    assert output_keys(buckets) == []
    server.add("/c/late.jpg", make_cover(7, TILE))  # the cover is back

    again = render(buckets, work)

    assert again.result.status == "ok" and not again.skipped
    assert server.hits["/c/late.jpg"] == 2 and len(output_keys(buckets)) == 2  # + thumbnail
    assert buckets.store.get_json(buckets["temp"], RECORD)["status"] == "ok"


def test_a_malformed_map_item_is_refused_at_the_handler_edge(buckets, server):
    from collage.contracts import InvalidEvent
    from collage.handlers.render import make_handler
    from collage_tools.emulator import LambdaContext

    event = {"run": RUN, "item": {**item(server), "urls": None}, "config": CONFIG}
    with pytest.raises(InvalidEvent, match=r"render event does not match its contract: item\.urls"):
        make_handler(buckets.runtime())(event, LambdaContext("r", 60, 1024))
    assert buckets.store.list_keys(buckets["temp"], "") == [] and server.hits.total() == 0


def test_an_unexpected_error_becomes_a_failure_record_not_a_crash(buckets, server, monkeypatch):
    import collage.engine.pipeline  # the task imports build_collage from here when it runs

    def broken(*args, **kwargs):
        raise TypeError("'NoneType' object is not iterable")

    monkeypatch.setattr(collage.engine.pipeline, "build_collage", broken)
    record = render(buckets, item(server)).result

    assert record.status == "failed" and record.error.startswith("TypeError: ")
    assert buckets.store.get_json(buckets["temp"], RECORD) == record.model_dump(mode="json")
    assert output_keys(buckets) == [] and server.hits.total() == 0


def test_s3_5xx_past_botocore_retries_raises_transient_error(buckets, server, monkeypatch):
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        s3.add("PutObject", "/collages/alice_", status=500, code="InternalError")
        with pytest.raises(TransientError, match="InternalError"):
            render(buckets, item(server))

    assert s3.count("PutObject") == aws.TOTAL_ATTEMPTS
    assert len(waits.botocore_backoff) == aws.TOTAL_ATTEMPTS - 1
    # No record: the state machine's retry must render this creator again, not skip it.
    assert buckets.store.get_json(buckets["temp"], RECORD) is None
    assert output_keys(buckets) == []


def test_s3_throttling_on_the_record_is_absorbed(buckets, server, monkeypatch):
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        fault = s3.add("PutObject", "/results/alice.json", times=3)
        record = render(buckets, item(server)).result

    assert fault.injected == 3 and len(waits.botocore_backoff) == 3
    assert record.status == "ok"
    assert buckets.store.get_json(buckets["temp"], RECORD)["status"] == "ok"


def test_s3_access_denied_is_recorded_not_retried(buckets, server, monkeypatch):
    with fast_waits(monkeypatch) as waits, S3Faults() as s3:
        s3.add("PutObject", "/collages/", status=403, code="AccessDenied")
        record = render(buckets, item(server)).result

    assert s3.count("PutObject", "/collages/") == 1 and waits.botocore_backoff == []
    assert record.status == "failed" and "AccessDenied" in record.error
    assert buckets.store.get_json(buckets["temp"], RECORD)["status"] == "failed"


def test_an_unreadable_earlier_record_is_rendered_again(buckets, server):
    buckets.store.put_json(buckets["temp"], RECORD, {"creator": "alice", "status": "done?"})

    outcome = render(buckets, item(server))

    assert not outcome.skipped and outcome.result.status == "ok"
    assert buckets.store.get_json(buckets["temp"], RECORD)["status"] == "ok"
