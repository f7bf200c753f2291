"""Formats that CDNs serve, through the whole workflow: loopback server, download, render, report.

Every cover is served under a name and Content-Type that lie about it, so only its bytes can
tell the format. Each creator's report record names every refused cover with its line and
code, and the collages are checked by pixels: each rendered cover is the blue picture with a
red marker in its top-left corner (stored turned or mirrored, with the EXIF orientation or
AVIF/HEIC transform that makes it upright), or a plain red first frame of an animation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from PIL import Image

from tests.support.hostile_images import (
    BLUE,
    RED,
    directory_bomb,
    encode,
    gif_frames,
    gif_with_comments,
    oriented,
    png_with_empty_chunks,
    progressive_jpeg,
    unsupported_images,
    with_extra_scans,
    with_segment,
)
from tests.support.workflow import csv_text, image, read_json, run_csv

pytestmark = pytest.mark.e2e

TILE = (216, 384)


def near(got: tuple[int, ...], want: tuple[int, int, int], tolerance: int = 24) -> bool:
    return max(abs(a - b) for a, b in zip(got[:3], want, strict=True)) < tolerance


def report_of(stack: Any, described: dict) -> dict:
    key = json.loads(described["output"])["report"].split("/", 3)[3]
    return read_json(stack, "OutputBucket", key)


def animated_webp() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, BLUE, RED, BLUE)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)


# (name it is served under, Content-Type, bytes): none of them what the cover is.
DECODED = [
    ("/d/avif-6.jpg", "image/jpeg", lambda: oriented("AVIF", 6)),
    ("/d/heic-3.png", "image/png", lambda: oriented("HEIC", 3)),
    ("/d/jpeg-5.heic", "image/heic", lambda: oriented("JPEG", 5, size=(864, 1536))),
    ("/d/png-7.webp", "image/webp", lambda: oriented("PNG", 7)),
    ("/d/webp-2", "application/octet-stream", lambda: oriented("WEBP", 2)),
    ("/d/heic-8.jpg", "image/jpeg", lambda: oriented("HEIC", 8)),
    ("/d/gif.jpg", "image/jpeg", lambda: gif_frames(10_000)),
    ("/d/webp-anim.gif", "image/gif", animated_webp),
]
MARKED = 6  # the first six show the marker; the animations show red


def test_covers_in_any_format_render_upright_whatever_their_url_says(local_stack, server):
    urls = [server.add(path, make(), kind) for path, kind, make in DECODED]
    rows = [("decoded", url, f"2025-03-{28 - n:02d}") for n, url in enumerate(urls)]

    _, described = run_csv(local_stack, csv_text(rows), "csv-files/formats.csv")

    assert described["status"] == "SUCCEEDED"
    (record,) = report_of(local_stack, described)["creators"]
    assert record["status"] == "ok" and record["failures"] == []
    (key,) = record["collages"]
    with image(local_stack, key) as collage:
        for slot in range(len(DECODED)):
            row, col = divmod(slot, 7)
            left, top = col * TILE[0], row * TILE[1]
            corner = collage.getpixel((left + 12, top + 12))
            far = collage.getpixel((left + TILE[0] - 13, top + TILE[1] - 13))
            if slot < MARKED:
                assert near(corner, RED) and near(far, BLUE), DECODED[slot][0]
            else:
                assert near(corner, RED) and near(far, RED), DECODED[slot][0]


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO file")
def test_refused_and_hostile_covers_are_named_by_line_and_code(local_stack, server):
    refused = unsupported_images()
    big_tiff = refused["tiff"] + bytes(8 << 20)  # stopped after its first bytes
    jpeg = encode(Image.new("RGB", TILE, RED), "JPEG")
    huge = (4000, 4000)
    many_scans = with_extra_scans(progressive_jpeg(huge), 10_000, huge)
    covers = {  # line -> (path, bytes, expected code or None when it renders)
        2: ("/h/ok.jpg", jpeg, None),
        3: ("/h/big.jpg", big_tiff, "unsupported_format"),
        4: ("/h/drawing.png", refused["svg"], "unsupported_format"),
        5: ("/h/x.jpg", refused["jxl"], "unsupported_format"),
        6: ("/h/y.heic", refused["heif"], "unsupported_format"),
        7: ("/h/clip.jpg", b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom" + bytes(64), "not_an_image"),
        8: ("/h/scans.jpg", many_scans, "too_many_scans"),
        9: ("/h/chunks.png", png_with_empty_chunks(1_000_000), "too_many_chunks"),
        10: ("/h/comments.gif", gif_with_comments(1_000_000), "too_many_chunks"),
        11: ("/h/mpf.jpg", with_segment(jpeg, 0xFFE2, b"MPF\0" + directory_bomb(65_000)), None),
        12: ("/h/line.png", encode(Image.new("RGB", (1, 100_000), RED), "PNG"), None),
    }
    urls = {line: server.add(path, data, "image/jpeg") for line, (path, data, _) in covers.items()}
    rows = [("hostile", urls[line], f"2025-03-{30 - line:02d}") for line in sorted(urls)]

    _, described = run_csv(local_stack, csv_text(rows), "csv-files/hostile-formats.csv")

    assert described["status"] == "SUCCEEDED"
    (record,) = report_of(local_stack, described)["creators"]
    assert record["status"] == "partial"
    failures = {f["line"]: (f["url"], f["code"]) for f in record["failures"]}
    assert failures == {
        line: (urls[line], code) for line, (_, _, code) in covers.items() if code is not None
    }
    by_line = {f["line"]: f["error"] for f in record["failures"]}
    assert "TIFF is not a supported format" in by_line[3] and "SVG" in by_line[4]
    assert "JPEG XL" in by_line[5] and "more than 100 scans" in by_line[8]
    assert server.bytes_sent["/h/big.jpg"] < 1 << 20  # refused on its first bytes
    with image(local_stack, record["collages"][0]) as collage:
        for cell, line in enumerate(sorted(covers)):  # a refused cover keeps a placeholder
            row, col = divmod(cell, 7)
            centre = collage.getpixel((col * TILE[0] + 108, row * TILE[1] + 192))
            assert near(centre, RED) == (covers[line][2] is None), line
