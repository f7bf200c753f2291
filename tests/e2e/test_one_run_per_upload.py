"""Hostile input, round 3 (#24), as a user meets it: a multipart upload and a duplicated event
are one run each, the same key uploaded twice loses nothing, signed cover URLs never show
their credentials, and `collage serve` stops soon after Ctrl-C even with runs under way.

Every case goes through the public commands (`collage run`, `collage serve`) or boto3 against
`collage serve`, with covers on a loopback server that counts requests per path."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from collage_tools.covers import make_cover
from collage_tools.emulator import s3_object_created_event
from tests.e2e.test_served_stack import aws, served  # noqa: F401 - fixtures of this module too
from tests.support.workflow import csv_text

pytestmark = pytest.mark.e2e
TILE = (216, 384)
MULTIPART = 8 * 1024 * 1024  # boto3's (and the AWS CLI's) multipart threshold
RUN_TIMEOUT = 180


def big_csv(path: Path, server, tag: str, creators: int = 3) -> list[str]:
    """A CSV over 8 MiB: `creators` creators of 35 served covers each (the ones rendered), then
    rows of distinct URLs that are cut (never fetched), padded by an extra column. Returns the
    served paths."""
    paths = [f"/{tag}/c{c}/{n}.jpg" for c in range(creators) for n in range(35)]
    urls = [server.add(path, make_cover(n % 35, TILE)) for n, path in enumerate(paths)]
    pad = "p" * 1000
    with path.open("w") as out:
        out.write("creator_name,cover_url,updated_at,notes\n")
        out.writelines(
            f"{p.split('/')[2]},{url},,{pad}\n" for p, url in zip(paths, urls, strict=True)
        )
        n = 0
        while out.tell() <= MULTIPART + 256 * 1024:
            out.write(f"c{n % creators},{server.url(f'/{tag}/cut/{n}.jpg')},,{pad}\n")
            n += 1
    assert path.stat().st_size > MULTIPART
    return paths


def executions_of(aws, served, key: str) -> list[dict]:  # noqa: F811 - the fixtures above
    sfn = aws("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=served["StateMachineArn"])["executions"]
    found = []
    for execution in listed:
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if json.loads(described["input"])["run"]["source_key"] == key:
            found.append(described)
    return found


def settled_executions(aws, served, key: str, at_least: int) -> list[dict]:  # noqa: F811
    """The key's executions once `at_least` exist and every one has ended; a moment later
    again, so a late duplicate run would be seen too."""
    ends = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < ends:
        found = executions_of(aws, served, key)
        if len(found) >= at_least and all(e["status"] != "RUNNING" for e in found):
            time.sleep(1.5)
            again = executions_of(aws, served, key)
            if len(again) == len(found) and all(e["status"] != "RUNNING" for e in again):
                return again
        time.sleep(0.3)
    raise AssertionError(f"the runs of {key} did not end: {executions_of(aws, served, key)}")


def keys_under(aws, bucket: str, prefix: str) -> list[str]:  # noqa: F811
    pages = aws("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def read_json(aws, bucket: str, key: str) -> dict:  # noqa: F811
    return json.loads(aws("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


# --------------------------------------------------------------------- one run per upload


def test_a_multipart_upload_through_collage_run_is_one_run(tmp_path, server):
    source = tmp_path / "big.csv"
    paths = big_csv(source, server, "run")
    done = subprocess.run(
        [sys.executable, "-m", "collage_tools.cli", "run", str(source), "--out",
         str(tmp_path / "out"), "--allow-loopback", "--verbose"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["creators"]["succeeded"] == 3 and summary["covers"]["downloaded"] == 105
    assert done.stderr.count('"split done"') == 1, "the workflow ran more than once"
    assert {path: server.hits[path] for path in paths} == dict.fromkeys(paths, 1)
    assert not [path for path in server.hits if "/cut/" in path]
    reports = list((tmp_path / "out").rglob("report_*.json"))
    assert len(reports) == 1


def test_a_multipart_upload_to_collage_serve_is_one_run(served, aws, server, tmp_path):  # noqa: F811
    source = tmp_path / "big.csv"
    paths = big_csv(source, server, "serve")
    key = f"csv-files/big-{uuid.uuid4().hex[:6]}.csv"
    aws("s3").upload_file(str(source), served["InputBucketName"], key)  # in parts, > 8 MiB
    (execution,) = settled_executions(aws, served, key, 1)
    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["covers"]["downloaded"] == 105
    assert {path: server.hits[path] for path in paths} == dict.fromkeys(paths, 1)


def test_a_duplicated_upload_event_is_one_run(served, aws, server):  # noqa: F811
    """EventBridge delivers at least once: the upload's own event, the same event again and a
    copy with a new id and sequencer (the same key, ETag and time) make one run."""
    paths = [f"/dup/{n}.jpg" for n in range(3)]
    urls = [server.add(path, make_cover(n, TILE)) for n, path in enumerate(paths)]
    key = f"csv-files/dup-{uuid.uuid4().hex[:6]}.csv"
    body = csv_text([("ivy", url, "") for url in urls]).encode()
    put = aws("s3").put_object(Bucket=served["InputBucketName"], Key=key, Body=body)
    (first,) = settled_executions(aws, served, key, 1)
    again = s3_object_created_event(
        served["InputBucketName"], key, len(body), put["ETag"].strip('"')
    )
    stamp = json.loads(first["input"])["run"]["timestamp"].split("-")[0]  # the upload's time
    again["time"] = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%dT%H:%M:%SZ")
    copy = json.loads(json.dumps(again))
    copy["id"], copy["detail"]["object"]["sequencer"] = str(uuid.uuid4()), "00FF"
    answers = [
        json.loads(
            aws("lambda")
            .invoke(FunctionName="collage-local-StartFromS3Function", Payload=json.dumps(e))[
                "Payload"
            ]
            .read()
        )
        for e in (again, again, copy)
    ]
    assert {a["name"] for a in answers} == {first["name"]}
    assert not any(a["started"] for a in answers)
    assert len(settled_executions(aws, served, key, 1)) == 1
    assert {path: server.hits[path] for path in paths} == dict.fromkeys(paths, 1)


# --------------------------------------------------------------------- the same key twice


@pytest.mark.parametrize("gap", [0.05, 0.6])
def test_the_same_key_uploaded_twice_loses_nothing(served, aws, server, gap):  # noqa: F811
    """Each upload is its own run with keys of its own (the execution name's digest follows the
    time): a run whose upload was replaced before it read it says `superseded`; every other
    run's report names its archived CSV, which holds that upload's content. Nothing is left
    under csv-files/ or failed/, and no report is replaced by another."""
    covers = [server.add(f"/twice{gap}/{n}.jpg", make_cover(n, TILE)) for n in range(4)]
    stem = f"twice-{uuid.uuid4().hex[:6]}"
    key, bucket = f"csv-files/{stem}.csv", served["InputBucketName"]
    contents = [
        csv_text([("jo", covers[0], ""), ("kit", covers[1], "")]).encode(),
        csv_text([("jo", covers[2], ""), ("lee", covers[3], "")]).encode(),
    ]
    etags = []
    for n, content in enumerate(contents):
        if n:
            time.sleep(gap)
        etags.append(aws("s3").put_object(Bucket=bucket, Key=key, Body=content)["ETag"])
    by_etag = {etag.strip('"'): content for etag, content in zip(etags, contents, strict=True)}

    executions = settled_executions(aws, served, key, 2)
    assert len(executions) == 2 and all(e["status"] == "SUCCEEDED" for e in executions)
    out = served["OutputBucketName"]
    reports = keys_under(aws, out, f"s3-trigger/csv-files/{stem}/collages/report_")
    reports = [key for key in reports if key.endswith(".json")]  # not the contact sheets
    assert len(reports) == 2, reports  # one each: neither replaced the other
    archived = []
    for execution in executions:
        run = json.loads(execution["input"])["run"]
        report_key = f"{run['output_prefix']}report_{run['timestamp']}.json"
        report = read_json(aws, out, report_key)
        assert report["run_id"] == execution["name"]
        if report["status"] == "superseded":  # replaced before it was read: only the first
            assert run["source_etag"] == etags[0].strip('"') and report["csv"] is None
            assert "replaced by a later upload" in report["superseded"]
            continue
        assert report["status"] == "succeeded", report
        parked = report["csv"].removeprefix(f"s3://{bucket}/")
        assert parked.startswith(f"archive/{stem}_")
        body = aws("s3").get_object(Bucket=bucket, Key=parked)["Body"].read()
        assert body == by_etag[run["source_etag"]]  # this upload's content, not the other's
        archived.append(body)
    assert contents[1] in archived  # the latest content is always kept
    assert sorted(keys_under(aws, bucket, f"archive/{stem}_")) == sorted(
        report["csv"].removeprefix(f"s3://{bucket}/")
        for report in (read_json(aws, out, k) for k in reports)
        if report["csv"]
    )
    assert keys_under(aws, bucket, key) == [] and keys_under(aws, bucket, f"failed/{stem}") == []


# --------------------------------------------------------------------- signed cover URLs


def test_signed_cover_urls_keep_their_secrets_out_of_every_report_and_log(tmp_path, server):
    """Query values that are credentials never reach the report, the summary or a log line
    (INFO logs on), whether the cover downloads, fails, retries or its row is rejected; the
    parameter names stay, so a reader still sees which URL it was."""
    secrets = [f"SECRET{n}x" for n in range(7)]
    server.add("/signed/ok.jpg", make_cover(1, TILE))
    server.add("/signed/flaky.jpg", make_cover(2, TILE))
    server.fault("/signed/flaky.jpg", "status", code=503, times=1)  # retried, logged
    base = server.base_url
    rows = [
        ("sig", f"{base}/signed/ok.jpg?x-expires=1737300000&x-signature={secrets[0]}", ""),
        ("sig", f"{base}/signed/gone.jpg?token={secrets[1]}", ""),  # 404
        ("sig", f"{base}/signed/flaky.jpg?X-Amz-Credential={secrets[2]}&X-Amz-Signature="
                f"{secrets[3]}", ""),
        ("sig", f"ftp://{base[7:]}/refused.jpg?token={secrets[4]}", ""),  # a rejected row
    ]  # fmt: skip
    text = csv_text(rows)
    text += f'"open quote,{base}/signed/x.jpg?sig={secrets[5]}\n'  # a malformed record
    text += f"no-url-row?password={secrets[6]}\n"  # too few fields
    source = tmp_path / "signed.csv"
    source.write_text(text)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "collage_tools.cli", "run", str(source), "--out", str(out),
         "--allow-loopback", "--verbose"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    summary = json.loads(done.stdout)
    assert summary["status"] == "completed_with_failures", done.stderr[-2000:]
    assert server.hits["/signed/ok.jpg"] == 1 and server.hits["/signed/flaky.jpg"] == 2
    # What the run wrote under --out; not .collage/, the temp bucket, which must hold the URLs
    # as given to fetch them (the map's items), as the deployed temp bucket does.
    written = [
        p.read_bytes().decode("utf-8", "replace")
        for p in out.rglob("*.json")
        if ".collage" not in p.relative_to(out).parts
    ]
    assert written and "retrying" in done.stderr  # the logs were on, the retry logged
    for place, content in [("stdout", done.stdout), ("stderr", done.stderr), *(
        ("report", w) for w in written
    )]:  # fmt: skip
        leaked = [s for s in secrets if s in content]
        assert not leaked, f"{place} shows {leaked}"
    values = {issue["value"] for issue in summary["row_issues_first"]}
    assert any("refused.jpg?token=***" in v for v in values), values
    assert any("x.jpg?sig=***" in v for v in values), values
    assert any("password=***" in v for v in values), values


# --------------------------------------------------------------------- a clean stop


def test_serve_stops_within_5_s_of_ctrl_c_with_10_runs_under_way(tmp_path):
    """Ten runs downloading from a slow server when Ctrl-C comes: serve stops them and exits,
    without waiting for the covers still under way."""
    import signal

    import boto3

    from collage_tools.cover_server import CoverServer
    from tests.e2e.test_served_stack import _read_announcement

    with CoverServer(latency=0.3) as slow:
        urls = [slow.add(f"/slow/{n}.jpg", make_cover(n, TILE)) for n in range(40)]
        process = subprocess.Popen(
            [sys.executable, "-m", "collage_tools.cli", "serve", "--port", "0",
             "--allow-loopback"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            announced = _read_announcement(process)
            options = {
                "endpoint_url": announced["endpoint"],
                "region_name": "us-east-1",
                "aws_access_key_id": "user",
                "aws_secret_access_key": "user",
            }
            s3, sfn = boto3.client("s3", **options), boto3.client("stepfunctions", **options)
            for run in range(10):
                rows = [(f"c{c}", urls[(c * 5 + n) % 40], "") for c in range(8) for n in range(5)]
                s3.put_object(
                    Bucket=announced["InputBucketName"],
                    Key=f"csv-files/busy{run}.csv",
                    Body=csv_text(rows).encode(),
                )
            ends = time.monotonic() + 60
            while time.monotonic() < ends:
                listed = sfn.list_executions(
                    stateMachineArn=announced["StateMachineArn"], statusFilter="RUNNING"
                )["executions"]
                if len(listed) == 10 and sum(slow.hits.values()) >= 10:
                    break
                time.sleep(0.2)
            assert len(listed) == 10, "the ten runs did not get under way"
            asked = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
            took = time.monotonic() - asked
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert "(10 runs under way stopped); the local stack and its objects are gone" in err
    assert took < 5, f"serve took {took:.1f} s to stop"
