"""`collage export-urls --upload` puts the CSV where the workflow starts (S3 emulated by moto)."""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from collage_tools.commands import export_urls

BUCKET = "input-bucket"


@pytest.fixture
def s3(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE covers (creator_name TEXT, cover_url TEXT, updated_at TEXT)")
        db.executemany(
            "INSERT INTO covers VALUES (?, ?, ?)",
            [
                ("zoë", "https://cdn.example/1.jpg", "2024-05-01"),
                ("ann", "https://cdn.example/2.jpg", None),
            ],
        )
    return f"sqlite:///{path}"


def export(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    export_urls.add_arguments(parser)
    return export_urls.run(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("target", "key"),
    [
        (f"s3://{BUCKET}/csv-files/", "csv-files/covers.csv"),
        (f"s3://{BUCKET}", "covers.csv"),
        (f"s3://{BUCKET}/csv-files/2024-05-01.csv", "csv-files/2024-05-01.csv"),
    ],
)
def test_upload_puts_the_exact_csv_at_the_key(s3, db_url, tmp_path, capsys, target, key):
    out = tmp_path / "covers.csv"
    assert export("--db", db_url, "--table", "covers", "-o", str(out), "--upload", target) == 0
    body = s3.get_object(Bucket=BUCKET, Key=key)
    assert body["Body"].read() == out.read_bytes()
    assert body["ContentType"].startswith("text/csv")
    assert out.read_text(encoding="utf-8").splitlines()[1] == "ann,https://cdn.example/2.jpg,"
    assert f"uploaded to s3://{BUCKET}/{key}" in capsys.readouterr().err


def test_upload_failure_is_one_line_and_keeps_the_local_csv(s3, db_url, tmp_path, capsys):
    out = tmp_path / "covers.csv"
    code = export(
        "--db", db_url, "--table", "covers", "-o", str(out), "--upload", "s3://no-such-bucket/in/"
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "wrote 2 rows" in err
    assert "error: upload to s3://no-such-bucket/in/covers.csv failed:" in err
    assert "NoSuchBucket" in err and "Traceback" not in err
    assert err.count("\n") == 2  # the summary, then the error
    assert len(out.read_text().splitlines()) == 3


def test_no_rows_writes_a_header_only_csv_and_uploads_nothing(s3, db_url, tmp_path, capsys):
    out = tmp_path / "covers.csv"
    argv = ["--db", db_url, "--table", "covers", "-o", str(out), "--since", "2030-01-01"]
    assert export(*argv, "--upload", f"s3://{BUCKET}/csv-files/") == 0
    assert out.read_text() == "creator_name,cover_url,updated_at\n"
    assert "no rows, so nothing uploaded" in capsys.readouterr().err
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
