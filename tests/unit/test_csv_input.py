"""The CSV rules as users meet them: through split_csv, the step that reads every file."""

import io
import json

import pytest

from collage.csv_input import CsvFileError
from collage.split import split_csv
from collage.text_encoding import file_encoding


def parse(text: str | bytes):
    """(usable rows as (line, creator, url) in line order, issues in line order)."""
    data = text.encode() if isinstance(text, str) else text
    out = io.BytesIO()
    summary = split_csv(io.BytesIO(data), out, 100)
    rows = [
        (line, item["creator"], url)
        for item in json.loads(out.getvalue())
        for line, url in zip(item["lines"], item["urls"], strict=True)
    ]
    return sorted(rows), summary.issues


def test_plain_file():
    rows, issues = parse(
        "creator_name,cover_url,updated_at\nalice,https://a.example/1.jpg,2025-01-19\n"
    )
    assert rows == [(2, "alice", "https://a.example/1.jpg")]
    assert issues == []


def test_bom_crlf_quotes_reordered_and_extra_columns():
    text = (
        "\ufeffupdated_at,extra,Cover_URL,creator_name\r\n"
        '2025-01-02,"x, y","https://a.example/1.jpg","Smith, Jo"\r\n'
        "\r\n"
        ",,https://a.example/3.jpg,bob\r\n"
        "2025-01-03,z,https://a.example/4.jpg,carol\r"  # a lone CR ends a line too
        "2025-01-03,z,https://a.example/5.jpg,dan\n"
    )
    rows, issues = parse(text)
    assert [(line, creator) for line, creator, _ in rows] == [
        (2, "Smith, Jo"), (4, "bob"), (5, "carol"), (6, "dan")
    ]  # fmt: skip
    assert issues == []


def test_a_quoted_field_never_runs_into_the_next_line():
    text = (
        "creator_name,cover_url\n"
        '"multi\nline",https://a.example/1.jpg\n'
        "bob,https://a.example/2.jpg\n"
    )
    rows, issues = parse(text)
    # Line 3 is read on its own: its quote is a character of the name, as the csv module has it.
    assert [(line, creator) for line, creator, _ in rows] == [(3, 'line"'), (4, "bob")]
    assert [(i.line, i.message) for i in issues] == [
        (2, "malformed CSV record: a quoted field is not closed on its line"),
    ]


def test_utf16_files_are_read():
    text = "creator_name,cover_url\nzoë,https://a.example/1.jpg\n"
    for encoding in ("utf-16", "utf-16-be"):
        data = text.encode(encoding)
        if encoding == "utf-16-be":
            data = b"\xfe\xff" + data
        assert parse(data)[0] == [(2, "zoë", "https://a.example/1.jpg")]


def test_row_problems_are_named_with_their_line_and_the_rest_proceeds():
    text = (
        "creator_name,cover_url,updated_at\n"
        "alice,https://a.example/1.jpg,2025-01-01\n"  # 2 ok
        ",https://a.example/2.jpg,2025-01-01\n"  # 3 missing creator
        "bob,ftp://a.example/3.jpg,\n"  # 4 bad scheme
        "carol,not a url,\n"  # 5 whitespace
        "dave\n"  # 6 too few fields
        "alice,https://a.example/1.jpg,2025-01-01\n"  # 7 duplicate
        "erin,https://a.example/4.jpg,yesterday\n"  # 8 bad date: kept, warned
        "frank," + "https://a.example/" + "x" * 3000 + ",\n"  # 9 too long
    )
    rows, issues = parse(text)
    assert [line for line, _, _ in rows] == [2, 8]
    by_line = {i.line: i for i in issues}
    assert by_line[3].message == "missing creator_name"
    assert "scheme" in by_line[4].message
    assert "whitespace" in by_line[5].message
    assert "expected at least 2 fields" in by_line[6].message
    assert by_line[7].severity == "warning" and "duplicate of line 2" in by_line[7].message
    assert by_line[8].severity == "warning" and "not an ISO date" in by_line[8].message
    assert "longer than 2048" in by_line[9].message


def test_invalid_utf8_row_is_reported_not_fatal():
    data = (
        b"creator_name,cover_url\nal\xffice,https://a.example/1.jpg\nbob,https://a.example/2.jpg\n"
        + "zoë,https://a.example/3.jpg\n".encode()  # a UTF-8 character: the file is UTF-8
    )
    rows, issues = parse(data)
    assert [creator for _, creator, _ in rows] == ["bob", "zoë"]
    assert issues[0].line == 2 and "UTF-8" in issues[0].message


@pytest.mark.parametrize(
    ("codec", "encoding", "named"),
    [
        ("cp1252", "cp1252", "Windows-1252"),
        ("latin-1", "cp1252", "Windows-1252"),
        ("utf-16-le", "utf-16-le", "UTF-16 (little-endian)"),
        ("utf-16-be", "utf-16-be", "UTF-16 (big-endian)"),
    ],
)
def test_a_file_without_bom_that_is_not_utf8_is_read_in_its_encoding(codec, encoding, named):
    text = (
        "creator_name,cover_url\nZoë Müller,https://a.example/1.jpg\nbob,https://a.example/2.jpg\n"
    )
    data = text.encode(codec)
    assert file_encoding(data) == encoding
    rows, issues = parse(data)
    assert [creator for _, creator, _ in rows] == ["Zoë Müller", "bob"]
    assert [(i.line, i.severity, i.message) for i in issues] == [
        (1, "warning", f"file has no BOM and is not UTF-8: read as {named}")
    ]


def test_a_spreadsheet_text_mark_before_a_formula_sign_is_not_part_of_the_name():
    names = ["'=SUM(A1)", "'+1", "'-x", "'@x", "'hello", "=raw", "''=x"]
    text = "creator_name,cover_url\n" + "".join(
        f"{name},https://a.example/{n}.jpg\n" for n, name in enumerate(names)
    )
    rows, issues = parse(text)
    assert [creator for _, creator, _ in rows] == [
        "=SUM(A1)", "+1", "-x", "@x", "'hello", "=raw", "''=x"
    ]  # fmt: skip
    assert not issues


def test_utf8_files_and_boms_are_not_guessed():
    assert file_encoding(b"creator_name,cover_url\nabc,https://x/\n") == "utf-8"
    assert file_encoding("creator_name\nZoë".encode()[:-1]) == "utf-8"  # a character cut short
    assert file_encoding(b"\xef\xbb\xbfcreator_name") == "utf-8-sig"
    assert file_encoding("creator_name".encode("utf-16")) == "utf-16"
    assert file_encoding(b"creator_name,cover_url\n\xff\xfe" + "é".encode()) == "utf-8"


def test_a_line_over_the_limit_is_skipped_unread_and_named():
    data = (
        "creator_name,cover_url\n"
        + "a" * 3_000_000
        + ",https://a.example/1.jpg\nbob,https://a.example/2.jpg\n"
    )
    rows, issues = parse(data)
    assert [(line, creator) for line, creator, _ in rows] == [(3, "bob")]
    assert [(i.line, i.message) for i in issues] == [(2, "line longer than 1,048,576 bytes")]
    assert issues[0].value == "a" * 200 + "…"  # its start, read as it streamed past


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("creator_name,cover_url,updated_at\n", "no data rows"),
        ("creator_name,cover_url\n\n\n", "no data rows"),
        ("name,url\nalice,https://a.example/1.jpg\n", "missing creator_name, cover_url"),
        ("x" * 2_000_000 + "\nalice,https://a.example/1.jpg\n", "header is longer"),
    ],
)
def test_file_problems_fail_with_a_reason(text, reason):
    with pytest.raises(CsvFileError, match=reason):
        parse(text)


def test_tile_order_newest_first_then_csv_order_missing_dates_last():
    text = (
        "creator_name,cover_url,updated_at\n"
        "a,https://x.example/old.jpg,2024-01-01\n"
        "a,https://x.example/none1.jpg,\n"
        "a,https://x.example/new.jpg,2025-06-01T10:00:00Z\n"
        "a,https://x.example/tie1.jpg,2025-01-01\n"
        "a,https://x.example/tie2.jpg,2025-01-01T00:00:00+00:00\n"
        "a,https://x.example/none2.jpg,yesterday\n"
    )
    out = io.BytesIO()
    split_csv(io.BytesIO(text.encode()), out, 100)
    (item,) = json.loads(out.getvalue())
    ordered = [url.rsplit("/", 1)[1] for url in item["urls"]]
    assert ordered == ["new.jpg", "tie1.jpg", "tie2.jpg", "old.jpg", "none1.jpg", "none2.jpg"]


def test_every_issue_quotes_its_value_and_column_with_credentials_masked():
    text = (
        "creator_name,cover_url,updated_at\n"
        "alice,javascript:alert(1),2025-01-01\n"  # 2
        "bob,https://user:secret@cdn.example/b.jpg?x=1 2,2025-01-01\n"  # 3
        "carol,https://cdn.example/c.jpg,next tuesday\n"  # 4
        ",https://cdn.example/d.jpg,\n"  # 5
        'dave,"https://cdn.example/e.jpg\n'  # 6
        "erin\n"  # 7
        "carol,https://cdn.example/c.jpg,2025-01-02\n"  # 8: a repeat of line 4's URL
        + "x" * 600
        + ",https://cdn.example/f.jpg,\n"  # 9
    )
    _, issues = parse(text)
    assert [(i.line, i.column, i.value) for i in issues] == [
        (2, "cover_url", "javascript:alert(1)"),
        (3, "cover_url", "https://cdn.example/b.jpg?x=1 2"),
        (4, "updated_at", "next tuesday"),
        (5, "creator_name", ""),
        (6, "", 'dave,"https://cdn.example/e.jpg'),
        (7, "", "erin"),
        (8, "cover_url", "https://cdn.example/c.jpg"),
        (9, "creator_name", "x" * 200 + "…"),
    ]
    assert all("secret" not in str(issue.to_dict()) for issue in issues)
