import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from collage.config import ProcessingConfig
from collage.runs import MapSettings, MessageError, run_from_message
from collage.runs import run_from_s3_event as run_from_model
from collage_tools.emulator import s3_object_created_event

SENT = datetime(2025, 1, 19, 10, 30, tzinfo=UTC)


def run_from_s3_event(event: dict, defaults: ProcessingConfig):
    """The run for an event as the starter parses it (Powertools Parser's EventBridge S3 model)."""
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    return run_from_model(S3EventNotificationEventBridgeModel.model_validate(event), defaults)


def message(**fields):
    body = {
        "processing_type": "csv_data",
        "csv_data": "creator_name,cover_url,updated_at\nalice,https://x.example/1.jpg,2025-01-19\n",
        "processing_config": {"rows": 5, "cols": 7, "quality": 95},
        "output_prefix": "manual-batch/",
    }
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None})


def test_s3_event_gives_a_named_run_under_s3_trigger():
    event = s3_object_created_event("in", "csv-files/daily/covers.csv", 10, "abc")
    event["time"] = "2025-01-19T10:30:00Z"
    request = run_from_s3_event(event, ProcessingConfig())
    assert request.name.startswith("covers-")
    assert request.output_prefix == "s3-trigger/csv-files/daily/covers/collages/"
    assert request.timestamp == f"20250119T103000Z-{request.name[-10:]}"
    document = request.execution_input(MapSettings())
    assert document["run"]["temp_prefix"] == f"runs/{request.name}/"
    assert document["map"] == {"max_concurrency": 40, "tolerated_failure_percentage": 25.0}


def test_same_event_twice_gives_the_same_name_another_upload_another():
    """EventBridge delivers at least once: a copy of the event (even with a new id and
    sequencer) is the same upload, the same key and ETag at the same time; another time or
    other content is another upload, and so another run with keys of its own."""

    def upload(etag: str = "abc", time: str = "2025-01-19T10:30:00Z", sequencer: str = "0A"):
        event = s3_object_created_event("in", "csv-files/covers.csv", 10, etag)
        event["time"], event["detail"]["object"]["sequencer"] = time, sequencer
        return run_from_s3_event(event, ProcessingConfig())

    first = upload()
    assert upload(sequencer="0B") == first  # a duplicate delivery: the very same run
    later, changed = upload(time="2025-01-19T10:30:01Z"), upload(etag="abd")
    assert len({first.name, later.name, changed.name}) == 3
    assert len({first.timestamp, later.timestamp, changed.timestamp}) == 3
    assert changed.timestamp.startswith("20250119T103000Z-")  # same second, its own keys
    assert (first.source_etag, changed.source_etag) == ("abc", "abd")


def test_a_csv_name_with_a_space_gets_the_folder_the_readme_shows():
    from collage.layout import RunLayout

    event = s3_object_created_event("in", "csv-files/space name.csv", 10, "abc")
    request = run_from_s3_event(event, ProcessingConfig())
    assert request.output_prefix == "s3-trigger/csv-files/space_name-21f96169/collages/"
    run = SimpleNamespace(source_key=request.source_key, timestamp="T")
    assert RunLayout(run).parked(failed=False) == "archive/space name_T.csv"


def test_objects_that_are_not_csvs_under_the_prefix_are_ignored():
    assert (
        run_from_s3_event(
            s3_object_created_event("in", "csv-files/x.txt", 1, "e"), ProcessingConfig()
        )
        is None
    )
    assert (
        run_from_s3_event(s3_object_created_event("in", "other/x.csv", 1, "e"), ProcessingConfig())
        is None
    )


def test_message_gives_a_run_under_sqs_trigger_with_its_config():
    request = run_from_message(
        "m-1", message(processing_config={"rows": 2}), SENT, "in", ProcessingConfig()
    )
    assert request.output_prefix == "sqs-trigger/manual-batch/collages/"
    assert request.config.rows == 2 and request.config.cols == 7
    assert request.source_key == f"sqs-inbox/{request.name}.csv"
    assert request.csv_data.startswith(b"creator_name")
    assert run_from_message("m-1", message(), SENT, "in", ProcessingConfig()).name == request.name


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (message(processing_type="zip"), "processing_type: Input should be 'csv_data', got 'zip'"),
        (message(csv_data=None), "csv_data: Field required"),
        (message(csv_data=5), "csv_data: Input should be a valid string, got 5"),
        (message(output_prefix=None), "output_prefix: Field required"),
        (message(output_prefix="../.."), "output_prefix: names no folder, got '../..'"),
        (
            message(processing_config={"rows": 0}),
            "rows: Input should be greater than or equal to 1, got 0",
        ),
        (
            message(processing_config={"quality": 500}),
            "quality: Input should be less than or equal to 100, got 500",
        ),
        (
            message(processing_config={"max_workers": 10000}),
            "max_workers: Input should be less than or equal to 64",
        ),
        (message(processing_config="big"), "processing_config: Input should be a valid dictionary"),
        (
            message(
                processing_config={"rows": 20, "cols": 20, "tile_width": 2048, "tile_height": 2048}
            ),
            "processing_config: rows x cols x tile_width x tile_height = 20 x 20 x 2048 x 2048 "
            "= a 40960 x 40960 canvas of 1,677,721,600 pixels, over the cap of 80,000,000",
        ),
    ],
)
def test_bad_messages_are_refused_with_a_clear_reason(body, reason):
    with pytest.raises(MessageError, match=reason):
        run_from_message("m-1", body, SENT, "in", ProcessingConfig())


def test_a_refusal_quotes_a_value_without_its_credentials():
    body = message(output_prefix="https://h/x?token=s3cret&w=1")
    with pytest.raises(MessageError) as refused:
        run_from_message("m-1", body, SENT, "in", ProcessingConfig())
    assert "s3cret" not in str(refused.value) and "token=***" in str(refused.value)


def test_an_oversized_message_is_refused_naming_its_size_and_the_limit():
    body = message(csv_data="x" * (1024 * 1024))
    size = len(body.encode())
    assert size > 1024 * 1024
    with pytest.raises(MessageError) as refused:
        run_from_message("m-1", body, SENT, "in", ProcessingConfig())
    assert str(refused.value) == (
        f"message body is {size:,} bytes, larger than the limit of 1,048,576 bytes "
        "(SQS's own ceiling)"
    )


def test_an_ordinary_output_prefix_is_used_as_given():
    request = run_from_message(
        "m-1", message(output_prefix="campaigns/2025-01"), SENT, "in", ProcessingConfig()
    )
    assert request.output_prefix == "sqs-trigger/campaigns/2025-01/collages/"


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("../../etc", "has a '..' segment, got '../../etc'"),
        ("/x", "is absolute (starts with /), got '/x'"),
        ("a//b", "has an empty folder name"),
        ("a\x00b", "contains an unprintable character U+0000 at position 1, got 'a\\x00b'"),
        ("a\x1bb", "contains an unprintable character U+001B at position 1"),
        ("a\\b", "contains a backslash at position 1"),
        ("p" * 300, "longer than 256 bytes of UTF-8 (300)"),
        ("/./", "names no folder"),
        ("", "names no folder"),
        (5, "Input should be a valid string, got 5"),
    ],
)
def test_a_hostile_output_prefix_refuses_the_message(prefix, reason):
    with pytest.raises(MessageError) as refused:
        run_from_message("m-1", message(output_prefix=prefix), SENT, "in", ProcessingConfig())
    assert str(refused.value).startswith("output_prefix: ")
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    "body",
    [
        '{"rows": ' + "9" * 5000 + "}",  # more digits than Python converts
        "[" * 100_000 + "]" * 100_000,  # deeper than the parser recurses
    ],
)
def test_json_that_python_cannot_parse_is_refused_not_raised(body):
    with pytest.raises(MessageError, match="message body is not valid JSON: "):
        run_from_message("m-1", body, SENT, "in", ProcessingConfig())


def test_the_run_carries_its_csv_as_s3s_url_encoded_copy_source():
    """Issue 22, item 6: the state machine's park copies with it; S3 wants it URL-encoded."""
    from collage.contracts import Run, copy_source

    assert copy_source("in", "csv-files/a b+c%20d é.csv") == (
        "in/csv-files/a%20b%2Bc%2520d%20%C3%A9.csv"
    )
    run = Run(
        id="x", trigger="s3", source_bucket="in", source_key="csv-files/a b.csv",
        csv_name="a b", timestamp="20250101T000000Z", output_prefix="o/collages/",
        temp_prefix="runs/x/",
    )  # fmt: skip
    assert run.copy_source == "in/csv-files/a%20b.csv"


def test_a_runs_map_concurrency_is_held_to_the_collage_tasks_reserved_concurrency():
    env = {"MAP_MAX_CONCURRENCY": "40", "MAP_TOLERATED_FAILURE_PERCENTAGE": "25"}
    assert MapSettings.from_environment(env).max_concurrency == 40
    for reserved, expected in (("0", 40), ("10", 10), ("100", 40), ("", 40)):
        settings = MapSettings.from_environment({**env, "RENDER_RESERVED_CONCURRENCY": reserved})
        assert settings.max_concurrency == expected, reserved
