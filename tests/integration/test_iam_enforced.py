"""Every handler under its own template role, with moto's IAM enforcement on.

A grant missing from template.yaml fails here as it would on AWS (see tests/support/iam.py for
what moto checks and what it does not).
"""

from __future__ import annotations

import pytest

from collage_tools.covers import make_cover
from tests.support.s3_faults import S3Faults, fast_waits
from tests.support.workflow import csv_text, executions, keys, read, read_json, run_csv

TILE = (216, 384)


@pytest.fixture
def enforced():
    from tests.support.iam import EnforcedStack

    with EnforcedStack(allow_loopback=True) as stack:
        yield stack


def report_of(stack, described):
    """The run report, where the aggregate step (or the state machine's last resort) writes it."""
    import json

    run = json.loads(described["input"])["run"]
    return read_json(stack, "OutputBucket", f"{run['output_prefix']}report_{run['timestamp']}.json")


def test_enforcement_is_on_and_denies_what_a_role_lacks(enforced):
    from botocore.exceptions import ClientError

    render_s3 = enforced.store_for("RenderFunction").s3
    with pytest.raises(ClientError) as refused:
        render_s3.get_object(Bucket=enforced.names["InputBucket"], Key="csv-files/x.csv")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert enforced.denied[-1][1:] == (
        "s3:GetObject",
        f"arn:aws:s3:::{enforced.names['InputBucket']}/csv-files/x.csv",
    )


def crashed_creator_run(stack, cover_server, monkeypatch, key):
    """Five creators; bob's collage upload fails on every try, so his map child crashes."""
    urls = [cover_server.add(f"/i/{n}.jpg", make_cover(n, TILE)) for n in range(5)]
    names = ["ann", "bob", "cat", "dan", "eve"]
    rows = [(name, url, "2025-01-01") for name, url in zip(names, urls, strict=True)]
    with fast_waits(monkeypatch), S3Faults() as s3:
        s3.add("PutObject", "/collages/bob_")
        _, described = run_csv(stack, csv_text(rows), key)
    return described


def test_without_the_map_results_grant_the_aggregate_step_is_denied(cover_server, monkeypatch):
    """Issue 14, defect 1, as it was: the aggregate role could read runs/* only."""
    from tests.support.iam import EnforcedStack

    with EnforcedStack(
        allow_loopback=True, without={"AggregateFunction": {"ReadMapResults"}}
    ) as stack:
        described = crashed_creator_run(stack, cover_server, monkeypatch, "csv-files/denied.csv")
        caller, action, resource = stack.denied[0]
        assert caller.endswith(
            "assumed-role/collage-local-AggregateFunction-role/AggregateFunction"
        )
        assert action == "s3:GetObject"
        assert resource.startswith(f"arn:aws:s3:::{stack.names['TempBucket']}/map-results/")
        assert resource.endswith("/manifest.json")
        # Before the fix the run failed here with no report; now the catch still reports it.
        assert described["status"] == "FAILED"
        report = report_of(stack, described)
        assert (
            report["error"]["stage"] == "aggregate" and "AccessDenied" in report["error"]["reason"]
        )
        assert len(keys(stack, "InputBucket", "failed/denied_")) == 2


def test_a_run_with_a_crashed_creator_under_the_template_roles(enforced, cover_server, monkeypatch):
    described = crashed_creator_run(enforced, cover_server, monkeypatch, "csv-files/roles.csv")
    assert enforced.denied == [], enforced.denied
    assert described["status"] == "SUCCEEDED", described
    report = report_of(enforced, described)
    assert report["status"] == "completed_with_failures"
    assert len(keys(enforced, "InputBucket", "archive/roles_")) == 1


def test_a_message_run_under_the_template_roles(enforced, cover_server):
    import json

    url = cover_server.add("/m/0.jpg", make_cover(0, TILE))
    message = {
        "processing_type": "csv_data",
        "csv_data": csv_text([("ann", url, "2025-01-01")]),
        "output_prefix": "batch/",
    }
    message_id = enforced.send_message(json.dumps(message))
    (delivered,) = enforced.deliver_messages()
    assert delivered == {"message_id": message_id, "started": True}
    (execution,) = executions(enforced)
    described = enforced.wait(execution["name"], timeout=120)
    assert enforced.denied == [], enforced.denied
    assert described["status"] == "SUCCEEDED", described
    assert len(keys(enforced, "InputBucket", "archive/sqs-inbox/")) == 1


def test_an_unusable_csv_is_reported_and_parked_under_the_template_roles(enforced):
    _, described = run_csv(enforced, "creator_name,cover_url\n", "csv-files/empty.csv")
    assert enforced.denied == [], enforced.denied
    assert described["status"] == "FAILED"
    assert len(keys(enforced, "InputBucket", "failed/empty_")) == 2  # the CSV and .error.json
    # The report and its contact sheet (one page: the totals and the reason).
    sheet_key, report_key = keys(enforced, "OutputBucket", "s3-trigger/csv-files/empty/")
    assert report_key.endswith(".json") and sheet_key == report_key[: -len("json")] + "html"
    assert read_json(enforced, "OutputBucket", report_key)["error"]["stage"] == "split"


def test_an_aggregate_bug_still_writes_a_report_and_parks_the_csv(
    enforced, cover_server, monkeypatch
):
    from collage.handlers import aggregate

    finish_run = aggregate.finish_run

    def broken_when_collecting(request, store, **kwargs):
        if request.split is not None:
            raise KeyError("a bug in the report code")
        return finish_run(request, store, **kwargs)

    monkeypatch.setattr(aggregate, "finish_run", broken_when_collecting)
    url = cover_server.add("/b/0.jpg", make_cover(0, TILE))
    _, described = run_csv(enforced, csv_text([("ann", url, "")]), "csv-files/bug.csv")
    assert enforced.denied == [], enforced.denied
    assert described["status"] == "FAILED"
    assert keys(enforced, "InputBucket", "csv-files/") == []
    assert len(keys(enforced, "InputBucket", "failed/bug_")) == 2
    (report_key,) = [k for k in keys(enforced, "OutputBucket") if k.endswith(".json")]
    report = read_json(enforced, "OutputBucket", report_key)
    assert report["error"]["stage"] == "aggregate"
    assert "a bug in the report code" in report["error"]["reason"]


@pytest.mark.parametrize(
    "key",
    ["csv-files/daily/worse.csv", "csv-files/daily/a b+c%20d é.csv"],
    ids=["plain", "space-plus-percent-unicode"],
)
def test_when_the_aggregate_function_cannot_report_the_state_machine_does(
    enforced, monkeypatch, key
):
    """Issue 22, item 6: the park's CopySource is URL-encoded (a raw `%20` named another key)."""
    import json

    from collage.handlers import aggregate

    def always_broken(*args, **kwargs):
        raise RuntimeError("the aggregate function is broken")

    monkeypatch.setattr(aggregate, "finish_run", always_broken)
    _, described = run_csv(enforced, "creator_name,cover_url\n", key)
    assert enforced.denied == [], enforced.denied
    assert described["status"] == "FAILED"
    assert keys(enforced, "InputBucket", "csv-files/") == []
    run = json.loads(described["input"])["run"]
    stem = f"failed/{run['id']}_{run['timestamp']}"
    assert keys(enforced, "InputBucket", "failed/") == [f"{stem}.csv", f"{stem}.error.json"]
    assert read(enforced, "InputBucket", f"{stem}.csv") == b"creator_name,cover_url\n"
    note = read_json(enforced, "InputBucket", f"{stem}.error.json")
    assert note["stage"] == "report"
    assert "the aggregate function is broken" in note["detail"]["Cause"]
    report_key = f"{run['output_prefix']}report_{run['timestamp']}.json"
    report = read_json(enforced, "OutputBucket", report_key)
    assert (report["status"], report["run_id"]) == ("failed", run["id"])
    assert report["csv"] == f"s3://{enforced.names['InputBucket']}/{stem}.csv"


def test_a_copy_needs_read_on_its_source_too(enforced):
    from botocore.exceptions import ClientError

    input_bucket, output_bucket = enforced.names["InputBucket"], enforced.names["OutputBucket"]
    enforced.store.s3.put_object(Bucket=input_bucket, Key="csv-files/x.csv", Body=b"x")
    render_s3 = enforced.store_for("RenderFunction").s3  # may write collages, not read input
    with pytest.raises(ClientError):
        render_s3.copy_object(
            Bucket=output_bucket,
            Key="s3-trigger/x.csv",
            CopySource={"Bucket": input_bucket, "Key": "csv-files/x.csv"},
        )
    assert enforced.denied[-1][1:] == (
        "s3:GetObject",
        f"arn:aws:s3:::{input_bucket}/csv-files/x.csv",
    )


@pytest.mark.parametrize(
    ("without", "mode", "code"),
    [
        ({}, "key", "NoSuchKey"),  # ListBucket on failed/* (s3:prefix), the key under it
        ({}, "absent", "AccessDenied"),  # the same grant, if S3 ignores conditioned grants here
        ({"SplitFunction": {"ListRunCsv"}}, "key", "AccessDenied"),  # no ListBucket at all
    ],
)
def test_a_missing_key_is_403_unless_the_caller_may_list_the_bucket(without, mode, code):
    """As on S3 (moto alone answers 404 whatever the policy says)."""
    from botocore.exceptions import ClientError

    from tests.support.iam import EnforcedStack

    with EnforcedStack(without=without, list_prefix_condition=mode) as stack:
        bucket = stack.names["InputBucket"]
        split_s3 = stack.store_for("SplitFunction").s3
        with pytest.raises(ClientError) as refused:
            split_s3.get_object(Bucket=bucket, Key="failed/gone_20250101T000000Z.csv")
        assert refused.value.response["Error"]["Code"] == code
        with pytest.raises(ClientError) as admin:  # the harness may list: a plain 404
            stack.store.s3.get_object(Bucket=bucket, Key="failed/gone_20250101T000000Z.csv")
        assert admin.value.response["Error"]["Code"] == "NoSuchKey"


@pytest.mark.parametrize(
    "without", [{}, {"SplitFunction": {"ListRunCsv"}}], ids=["template", "no-list-grant"]
)
def test_a_restarted_run_reads_the_csv_it_parked_under_the_template_roles(
    without, cover_server, monkeypatch
):
    """Issue 22, item 2: on AWS the restart's read of the moved CSV answered 403, not 404.

    Without the ListBucket grant (or where S3 does not count its s3:prefix condition) the
    split still finds the parked copy: it takes a 403 for "maybe missing" on these keys."""
    import json

    from tests.e2e.test_idempotency import restart
    from tests.support.iam import EnforcedStack

    urls = [cover_server.add(f"/r/{n}.jpg", make_cover(n, TILE)) for n in range(3)]
    rows = [
        (name, url, "2025-01-01") for name, url in zip(["ann", "bob", "cat"], urls, strict=True)
    ]
    with EnforcedStack(allow_loopback=True, without=without) as stack:
        with fast_waits(monkeypatch), S3Faults() as s3:
            s3.add("PutObject", "/collages/bob_")
            s3.add("CopyObject", "archive/")
            _, first = run_csv(stack, csv_text(rows), "csv-files/outage.csv")
        assert first["status"] == "FAILED"
        assert keys(stack, "InputBucket", "csv-files/") == []
        assert len(keys(stack, "InputBucket", "failed/outage_")) == 2
        # A restart reads the run's own copy of its CSV while the temp bucket keeps it; once
        # that copy has expired (TempExpirationDays), it must find the CSV it parked.
        temp = stack.names["TempBucket"]
        (copy,) = [k for k in keys(stack, "TempBucket", "runs/") if k.endswith("/source.csv")]
        stack.store.delete_object(temp, copy)
        denied_before = len(stack.denied)

        second = restart(stack, first, "outage-restarted")

        assert second["status"] == "SUCCEEDED", second
        summary = json.loads(second["output"])
        assert summary["creators"]["succeeded"] == 3
        denials = stack.denied[denied_before:]
        # Only the split's reads of the keys the CSV is not at are refused, as S3 would.
        bucket = stack.names["InputBucket"]
        tried = {f"arn:aws:s3:::{bucket}/csv-files/outage.csv"}
        tried |= {f"arn:aws:s3:::{bucket}/{k}" for k in keys(stack, "InputBucket", "failed/")}
        tried = {t.replace("failed/", "archive/") for t in tried if t.endswith(".csv")} | tried
        assert {(c.rsplit("/", 1)[-1], a) for c, a, _ in denials} <= {
            ("SplitFunction", "s3:GetObject")
        }
        assert {r for _, _, r in denials} <= tried, denials
        if without:
            assert len(denials) == 2, "the moved source and archive/ should have answered 403"


def test_an_upload_event_with_an_encoded_key_starts_the_run_of_that_object(enforced, cover_server):
    """Issue 22, item 8, under the starter's role: `a b+c.csv` named as `a+b%2Bc.csv`."""
    import json

    from collage_tools.emulator import s3_object_created_event

    url = cover_server.add("/k/0.jpg", make_cover(0, TILE))
    bucket, key = enforced.names["InputBucket"], "csv-files/a b+c.csv"
    data = csv_text([("ann", url, "2025-01-01")]).encode()
    etag = enforced.store.s3.put_object(Bucket=bucket, Key=key, Body=data)["ETag"].strip('"')
    event = s3_object_created_event(bucket, "csv-files/a+b%2Bc.csv", len(data), etag)

    started = enforced.invoke("StartFromS3Function", event)

    described = enforced.wait(started["name"], timeout=120)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["input"])["run"]["source_key"] == key
    assert len(keys(enforced, "InputBucket", "archive/a b+c_")) == 1
    # Only the lookup of the encoded reading was refused (403: not there, nothing to list).
    assert {r for _, _, r in enforced.denied} <= {f"arn:aws:s3:::{bucket}/csv-files/a+b%2Bc.csv"}
