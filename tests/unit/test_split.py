import io
import json

from collage.split import split_csv


def run_split(text: str, max_images: int = 35, creators: io.BytesIO | None = None):
    out = io.BytesIO()
    summary = split_csv(io.BytesIO(text.encode()), out, max_images, creators_out=creators)
    return summary, json.loads(out.getvalue())


def test_one_item_per_creator_in_first_appearance_order():
    creators = io.BytesIO()
    summary, items = run_split(
        "creator_name,cover_url,updated_at\n"
        "bob,https://x.example/b1.jpg,2025-01-01\n"
        "alice,https://x.example/a1.jpg,2025-01-01\n"
        "bob,https://x.example/b2.jpg,2025-02-01\n",
        creators=creators,
    )
    assert [i["creator"] for i in items] == ["bob", "alice"]
    assert items[0]["urls"] == ["https://x.example/b2.jpg", "https://x.example/b1.jpg"]
    assert items[0]["lines"] == [4, 2]
    assert summary.to_dict() == {
        "rows": 3,
        "rows_rejected": 0,
        "row_warnings": 0,
        "row_issues_unlisted": 0,
        "creators": 2,
        "covers": 3,
        "covers_cut": 0,
    }
    assert creators.getvalue() == b'["bob","bob"]\n["alice","alice"]\n'  # the aggregator's list


def test_covers_beyond_the_limit_are_cut_by_tile_order():
    rows = "".join(f"a,https://x.example/{n}.jpg,2025-01-{n:02d}\n" for n in range(1, 11))
    summary, items = run_split("creator_name,cover_url,updated_at\n" + rows, max_images=4)
    assert items[0]["urls"] == [f"https://x.example/{n}.jpg" for n in (10, 9, 8, 7)]
    assert items[0]["cut"] == 6
    assert (summary.covers, summary.covers_cut) == (4, 6)


def test_hostile_creator_names_get_safe_distinct_keys():
    _summary, items = run_split(
        "creator_name,cover_url\n"
        "../../evil,https://x.example/1.jpg\n"
        "a/b,https://x.example/2.jpg\n"
        "a\\b,https://x.example/3.jpg\n"
    )
    names = [i["name"] for i in items]
    assert len(set(names)) == 3
    assert all("/" not in n and "\\" not in n and ".." not in n for n in names)
    assert [i["creator"] for i in items] == ["../../evil", "a/b", "a\\b"]


def test_rejected_rows_are_counted_and_kept_for_the_report():
    summary, items = run_split("creator_name,cover_url\nalice,https://x.example/1.jpg\nbob,nope\n")
    assert [i["creator"] for i in items] == ["alice"]
    assert summary.rows_rejected == 1
    assert summary.issues[0].to_dict() == {
        "line": 3,
        "severity": "error",
        "creator": "bob",
        "message": "cover_url scheme must be http or https, got 'none'",
        "column": "cover_url",
        "value": "nope",
    }


def test_every_item_stays_far_below_the_payload_limit():
    url = "https://x.example/" + "p" * 2000
    rows = "".join(f"a,{url}{n},\n" for n in range(200))
    _, items = run_split("creator_name,cover_url,updated_at\n" + rows, max_images=100)
    assert len(json.dumps(items[0]).encode()) < 256 * 1024 * 0.9


def test_the_summary_lists_the_first_issues_and_counts_them_all():
    from collage.csv_input import RowIssue
    from collage.split import SplitLimits, split_csv

    rows = [f"c{n},https://x.example/{n}.jpg,yesterday\n" for n in range(6)]  # lines 2-7: warnings
    rows += ["c9,not a url,\n", ",https://x.example/none.jpg,\n"]  # lines 8, 9: errors
    rows.append(rows[0])  # line 10: a bad date again, and a duplicate of line 2 (second pass)
    seen: list[RowIssue] = []
    summary = split_csv(
        io.BytesIO(("creator_name,cover_url,updated_at\n" + "".join(rows)).encode()),
        io.BytesIO(),
        35,
        seen.append,
        limits=SplitLimits(listed_issues=3),
    )
    assert [issue.line for issue in summary.issues] == [2, 3, 4]
    assert sorted(issue.line for issue in seen) == [*range(2, 11), 10]  # every one reported
    assert (summary.rows_rejected, summary.row_warnings, summary.issues_unlisted) == (2, 8, 7)
    assert summary.to_dict()["row_issues_unlisted"] == 7


def csv_of(rows: list[tuple[str, str, str]]) -> str:
    import csv

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerows([("creator_name", "cover_url", "updated_at"), *rows])
    return text.getvalue()


def bounded_split(text: str, item_bytes: int, max_images: int = 100):
    from collage.split import SplitLimits

    out = io.BytesIO()
    summary = split_csv(
        io.BytesIO(text.encode()), out, max_images, limits=SplitLimits(item_bytes=item_bytes)
    )
    return summary, json.loads(out.getvalue())


def test_an_item_at_the_size_bound_is_whole_and_one_byte_over_loses_its_oldest_cover():
    rows = [("ann", f"https://x.example/{n:03d}.jpg", f"2025-01-{n + 1:02d}") for n in range(20)]
    rows.append(("bob", "https://x.example/bob.jpg", ""))
    text = csv_of(rows)
    _, items = bounded_split(text, 1 << 20)
    size = len(json.dumps(items[0], ensure_ascii=False, separators=(",", ":")).encode())

    at_bound, whole = bounded_split(text, size)
    assert whole == items and at_bound.row_warnings == 0

    over, cut = bounded_split(text, size - 1)
    assert cut[0]["urls"] == items[0]["urls"][:-1]  # the oldest (last in tile order) goes
    assert cut[0]["lines"] == items[0]["lines"][:-1] and cut[0]["cut"] == 1
    assert cut[1] == items[1]  # bob is untouched
    assert len(json.dumps(cut[0], ensure_ascii=False, separators=(",", ":")).encode()) < size
    assert (over.covers, over.covers_cut, over.row_warnings) == (20, 1, 1)
    (issue,) = over.issues
    assert (issue.line, issue.creator, issue.severity) == (2, "ann", "warning")
    assert issue.value == "https://x.example/000.jpg"
    assert "262,144-byte payload limit" in issue.message


def test_urls_that_json_escapes_are_cut_to_fit_the_payload_limit():
    """Issue 22, item 4: 100 covers of 2,048 characters full of `"` or `\\` made a 401 KB item.
    A `\\` is refused since the split checks URLs with url_guard's rule (issue 23)."""
    from collage.split import SplitLimits

    bound = SplitLimits().item_bytes
    rows = [("ann", f"https://x.example/{n:03d}/" + '"' * 2025, "2025-01-01") for n in range(100)]
    summary, (item,) = bounded_split(csv_of(rows), bound)
    size = len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
    assert bound - 4200 < size <= bound  # as many covers as fit (each ~4.1 KB escaped)
    kept = len(item["urls"])
    assert 50 < kept < 100 and item["cut"] == 100 - kept
    assert item["urls"] == [row[1] for row in rows[:kept]]  # ties: CSV order, then cut
    assert summary.row_warnings == 100 - kept == summary.covers_cut
    assert [i.line for i in summary.issues] == list(range(kept + 2, 102))

    rows = [("ann", f"https://x.example/{n:03d}/" + "\\" * 2025, "2025-01-01") for n in range(100)]
    summary, items = bounded_split(csv_of(rows), bound)
    assert items == [] and summary.rows_rejected == 100
    assert {i.message for i in summary.issues} == {"cover_url contains a backslash"}
