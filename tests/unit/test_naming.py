import re

import pytest

from collage.naming import (
    MAX_EXECUTION_NAME,
    MAX_PREFIX_BYTES,
    check_prefix,
    clean_prefix,
    csv_stem,
    execution_name,
    run_timestamp,
    safe_segment,
)


def test_plain_names_stay_as_they_are():
    assert safe_segment("alice") == "alice"
    assert safe_segment("émilie_ré") == "émilie_ré"
    assert safe_segment("Émilie_Ré").startswith("Émilie_Ré-")  # capitals: see below


def test_names_that_differ_by_case_differ_without_it():
    """S3 keys are case-sensitive; a Mac or Windows folder is not: `aws s3 sync` of `Alice_...`
    and `alice_...` would keep one file. A name with capitals gets its hash tail."""
    names = ["alice", "Alice", "ALICE", "aLiCe", "Ωmega", "ωmega", "straße", "STRASSE"]
    segments = [safe_segment(n) for n in names]
    assert len({s.casefold() for s in segments}) == len(names)
    assert segments[0] == "alice" and segments[1].startswith("Alice-")


def test_invisible_and_reserved_names_get_their_own_readable_key():
    invisible = ["ali\u200bce", "ali\u202ece", "\u2066alice\u2069", "alice\ufeff", "ali\u00adce"]
    windows = ["con", "con.txt", "nul", "com1", "lpt9.jpg", "aux."]
    trailing = ["alice.", "alice ", "alice. . "]
    names = ["alice", *invisible, *windows, *trailing]
    segments = {name: safe_segment(name) for name in names}
    assert len({s.casefold() for s in segments.values()}) == len(names)
    for name in invisible:  # the invisible characters become `_`, the rest stays readable
        assert segments[name].isprintable() and "ali" in segments[name]
    for name in windows:  # "con-1a2b3c4d" is no device name on Windows
        assert segments[name].startswith(name.rstrip(".") + "-")
    assert safe_segment("console") == "console" and safe_segment("conan") == "conan"


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


@pytest.mark.parametrize(
    ("prefix", "kept"),
    [
        ("campaigns/2025-01", "campaigns/2025-01"),
        ("manual-batch/", "manual-batch"),
        ("Zoë's covers/v1.2", "Zoë's covers/v1.2"),
        ("東京/2025", "東京/2025"),
        ("a" * MAX_PREFIX_BYTES, "a" * MAX_PREFIX_BYTES),
        ("x..y/.hidden", "x..y/.hidden"),
    ],
)
def test_ordinary_prefixes_are_kept_as_given(prefix, kept):
    assert check_prefix(prefix) == kept


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("../x", "has a '..' segment"),
        ("a/../../b", "has a '..' segment"),
        ("a/./b", "has a '.' segment"),
        ("/x", "is absolute (starts with /)"),
        ("//x", "is absolute (starts with /)"),
        ("a//b", "has an empty folder name"),
        ("a/ /b", "has an empty folder name"),
        ("a\x00b", "contains an unprintable character U+0000 at position 1"),
        ("a\nb", "contains an unprintable character U+000A at position 1"),
        ("a\tb", "contains an unprintable character U+0009 at position 1"),
        ("x\x85", "contains an unprintable character U+0085 at position 1"),  # C1 NEL
        ("evil\u202egpj", "contains an unprintable character U+202E at position 4"),  # bidi
        ("zero\u200bwidth", "contains an unprintable character U+200B at position 4"),
        ("a\u2028b", "contains an unprintable character U+2028 at position 1"),
        ("lone\ud800", "contains an unprintable character U+D800 at position 4"),
        ("a\\..\\b", "contains a backslash at position 1, not allowed in a folder name"),
        ("a%2e%2e%2fb", "contains '%' at position 1, not allowed in a folder name"),
        ("a:b", "contains ':' at position 1"),
        ("report#1", "contains '#' at position 6"),
        ("a" * (MAX_PREFIX_BYTES + 1), "longer than 256 bytes of UTF-8 (257)"),
        ("é" * 129, "longer than 256 bytes of UTF-8 (258)"),
        ("x" * 1_000_000, "longer than 256 bytes of UTF-8 (1,000,000)"),
        ("", "names no folder"),
        ("/", "names no folder"),
        ("./", "names no folder"),
        ("..", "names no folder"),
        ("../..//", "names no folder"),
        ("   ", "names no folder"),
    ],
)
def test_hostile_prefixes_are_refused_with_the_reason(prefix, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_prefix(prefix)
