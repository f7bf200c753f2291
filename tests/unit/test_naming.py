from collage.naming import (
    MAX_EXECUTION_NAME,
    clean_prefix,
    csv_stem,
    execution_name,
    run_timestamp,
    safe_segment,
)


def test_plain_names_stay_as_they_are():
    assert safe_segment("alice") == "alice"
    assert safe_segment("Émilie_Ré") == "Émilie_Ré"


def test_unicode_names_stay_readable():
    name = safe_segment("小红书 创作者")
    assert name.startswith("小红书_创作者-")


def test_hostile_names_are_neutralised():
    for hostile in ("../../etc/passwd", "a/b", "a\\b", "..", "con\x00trol\n", "/abs", "x" * 500):
        segment = safe_segment(hostile)
        assert "/" not in segment and "\\" not in segment
        assert ".." not in segment
        assert all(ord(c) >= 32 for c in segment)
        assert 0 < len(segment) <= 120


def test_names_that_neutralise_alike_stay_distinct():
    names = ["a/b", "a\\b", "a_b", "a:b", "a b", "a  b", "../a_b"]
    segments = {safe_segment(n) for n in names}
    assert len(segments) == len(names)


def test_execution_names_are_valid_and_distinct():
    name = execution_name("daily covers (v2)", "bucket|csv-files/daily covers (v2).csv|etag")
    assert len(name) <= MAX_EXECUTION_NAME
    assert not set(name) & set(' <>{}[]?*"#%\\^|~`$&,;:/')
    assert name.startswith("daily-covers-v2-")
    other = execution_name("daily covers (v2)", "bucket|csv-files/daily covers (v2).csv|etag2")
    assert other != name
    assert len(execution_name("x" * 300, "id")) == MAX_EXECUTION_NAME


def test_csv_stem_and_prefixes():
    assert csv_stem("csv-files/daily/covers.csv") == "covers"
    assert clean_prefix("manual-batch/") == "manual-batch"
    assert clean_prefix("/../../etc//x/") == "etc/x"
    assert clean_prefix("..") == ""


def test_run_timestamp_is_utc_compact():
    from datetime import datetime, timedelta, timezone

    moment = datetime(2025, 1, 19, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert run_timestamp(moment) == "20250119T103000Z"
