import io

import pytest

from collage.csv_input import CsvFileError, read_rows, tile_order_key


def parse(text: str | bytes):
    issues = []
    data = text.encode() if isinstance(text, str) else text
    rows = list(read_rows(io.BytesIO(data), issues.append))
    return rows, issues


def test_plain_file():
    rows, issues = parse(
        "creator_name,cover_url,updated_at\nalice,https://a.example/1.jpg,2025-01-19\n"
    )
    assert [(r.line, r.creator, r.url, r.updated_at) for r in rows] == [
        (2, "alice", "https://a.example/1.jpg", "2025-01-19")
    ]
    assert issues == []


def test_bom_crlf_quotes_reordered_and_extra_columns():
    text = (
        "\ufeffupdated_at,extra,Cover_URL,creator_name\r\n"
        '2025-01-02,"x, y","https://a.example/1.jpg","Smith, Jo"\r\n'
        '2025-01-03,z,https://a.example/2.jpg,"multi\nline"\r\n'
        "\r\n"
        ",,https://a.example/3.jpg,bob\r\n"
    )
    rows, issues = parse(text)
    assert [(r.line, r.creator) for r in rows] == [(2, "Smith, Jo"), (3, "multi\nline"), (6, "bob")]
    assert rows[2].updated_at == "" and rows[2].timestamp is None
    assert issues == []


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
    assert [r.line for r in rows] == [2, 8]
    by_line = {i.line: i for i in issues}
    assert by_line[3].message == "missing creator_name"
    assert "scheme" in by_line[4].message
    assert "whitespace" in by_line[5].message
    assert "expected at least 2 fields" in by_line[6].message
    assert by_line[7].severity == "warning" and "duplicate of line 2" in by_line[7].message
    assert by_line[8].severity == "warning" and rows[1].timestamp is None
    assert "longer than 2048" in by_line[9].message


def test_invalid_utf8_row_is_reported_not_fatal():
    data = (
        b"creator_name,cover_url\nal\xffice,https://a.example/1.jpg\nbob,https://a.example/2.jpg\n"
    )
    rows, issues = parse(data)
    assert [r.creator for r in rows] == ["bob"]
    assert issues[0].line == 2 and "UTF-8" in issues[0].message


def test_very_long_field_is_reported():
    data = (
        "creator_name,cover_url\n"
        + "a" * 200_000
        + ",https://a.example/1.jpg\nbob,https://a.example/2.jpg\n"
    )
    rows, issues = parse(data)
    assert [r.creator for r in rows] == ["bob"]
    assert issues and issues[0].line == 2


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("creator_name,cover_url,updated_at\n", "no data rows"),
        ("creator_name,cover_url\n\n\n", "no data rows"),
        ("name,url\nalice,https://a.example/1.jpg\n", "missing creator_name, cover_url"),
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
        "a,https://x.example/none2.jpg,\n"
    )
    rows, _ = parse(text)
    ordered = [r.url.rsplit("/", 1)[1] for r in sorted(rows, key=tile_order_key)]
    assert ordered == ["new.jpg", "tie1.jpg", "tie2.jpg", "old.jpg", "none1.jpg", "none2.jpg"]
