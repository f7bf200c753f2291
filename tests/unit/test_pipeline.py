"""build_collage: placement, pages, failures and downloads (from a loopback CoverServer)."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from collage.engine.download import FetchPolicy
from collage.engine.pipeline import build_collage, read_local
from collage.engine.render import CoverError, Layout, placeholder_colours
from collage_tools.cover_server import CoverServer
from collage_tools.loopback import local_guard

SMALL = Layout(rows=2, cols=3, tile_width=64, tile_height=96, background=(0, 0, 0))
POLICY = FetchPolicy(max_retries=0, total_timeout=10.0, read_timeout=5.0)
LOOPBACK = FetchPolicy(
    max_retries=0, total_timeout=10.0, read_timeout=5.0, address_guard=local_guard(True)
)
PALETTE = [
    (230, 30, 30),
    (30, 200, 30),
    (30, 30, 230),
    (230, 230, 30),
    (30, 230, 230),
    (230, 30, 230),
    (250, 150, 20),
    (120, 60, 200),
    (250, 250, 250),
    (100, 100, 20),
]


def solid_jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (270, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=95)
    return out.getvalue()


def write_solids(folder: Path, count: int) -> list[str]:
    paths = []
    for index in range(count):
        path = folder / f"c{index:02d}.jpg"
        path.write_bytes(solid_jpeg(PALETTE[index]))
        paths.append(str(path))
    return paths


def cell_colour(page: bytes, layout: Layout, slot: int) -> tuple[int, int, int]:
    image = Image.open(io.BytesIO(page))
    left, top, right, bottom = layout.cell_box(slot)
    return image.getpixel(((left + right) // 2, top + (bottom - top) // 4))


def close(pixel, colour, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_tiles_fill_the_grid_row_major_in_source_order(tmp_path: Path) -> None:
    sources = write_solids(tmp_path, 6)
    result = build_collage(sources, SMALL, policy=POLICY, max_workers=4)
    assert len(result.pages) == 1 and not result.failed
    page = Image.open(io.BytesIO(result.pages[0]))
    assert page.format == "JPEG" and page.size == (192, 192)
    for slot in range(6):
        assert close(cell_colour(result.pages[0], SMALL, slot), PALETTE[slot]), slot
    assert [o.page for o in result.outcomes] == [1] * 6
    assert [o.index for o in result.outcomes] == list(range(6))
    assert all(o.bytes == Path(o.source).stat().st_size for o in result.outcomes)


def test_more_covers_than_cells_make_pages(tmp_path: Path) -> None:
    sources = write_solids(tmp_path, 8)
    result = build_collage(sources, SMALL, policy=POLICY)
    assert len(result.pages) == 2
    assert [o.page for o in result.outcomes] == [1] * 6 + [2] * 2
    assert close(cell_colour(result.pages[1], SMALL, 0), PALETTE[6])
    assert close(cell_colour(result.pages[1], SMALL, 1), PALETTE[7])
    assert close(cell_colour(result.pages[1], SMALL, 2), (0, 0, 0))  # unused cell: background


def test_a_failed_cover_leaves_a_placeholder(tmp_path: Path) -> None:
    sources = write_solids(tmp_path, 4)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    sources[1] = str(tmp_path / "broken.jpg")
    result = build_collage(sources, SMALL, policy=POLICY)
    fill, _ = placeholder_colours(SMALL.background)
    assert cell_colour(result.pages[0], SMALL, 1) == pytest.approx(fill, abs=6)
    assert close(cell_colour(result.pages[0], SMALL, 2), PALETTE[2])
    [failed] = result.failed
    assert (failed.index, failed.error_code, failed.page) == (1, "corrupt_image", None)
    assert failed.source == sources[1] and failed.error


def test_close_up_moves_later_covers_into_the_gap(tmp_path: Path) -> None:
    sources = write_solids(tmp_path, 4)
    sources[1] = str(tmp_path / "missing.jpg")
    layout = Layout(**{**SMALL.__dict__, "on_failure": "close_up"})
    result = build_collage(sources, layout, policy=POLICY)
    assert close(cell_colour(result.pages[0], layout, 1), PALETTE[2])
    assert close(cell_colour(result.pages[0], layout, 2), PALETTE[3])
    assert close(cell_colour(result.pages[0], layout, 3), (0, 0, 0))
    assert [o.error_code for o in result.failed] == ["file_error"]


def test_close_up_needs_fewer_pages(tmp_path: Path) -> None:
    sources = write_solids(tmp_path, 7)
    sources[0] = str(tmp_path / "missing.jpg")
    placeholder = build_collage(sources, SMALL, policy=POLICY)
    closed = build_collage(
        sources, Layout(**{**SMALL.__dict__, "on_failure": "close_up"}), policy=POLICY
    )
    assert (len(placeholder.pages), len(closed.pages)) == (2, 1)
    assert [o.page for o in closed.outcomes] == [None] + [1] * 6


def test_nothing_rendered_gives_no_pages(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_bytes(b"<!doctype html><p>hello</p>")
    result = build_collage(
        [str(tmp_path / "page.html"), str(tmp_path / "no.jpg")], SMALL, policy=POLICY
    )
    assert result.pages == []
    assert [o.error_code for o in result.outcomes] == ["not_an_image", "file_error"]
    assert build_collage([], SMALL, policy=POLICY).pages == []


def test_a_page_of_only_failures_is_not_written(tmp_path: Path) -> None:
    sources = write_solids(tmp_path, 7)
    for index in range(6):
        sources[index] = str(tmp_path / f"missing{index}.jpg")
    result = build_collage(sources, SMALL, policy=POLICY)
    assert len(result.pages) == 1
    assert result.outcomes[6].page == 1
    assert close(cell_colour(result.pages[0], SMALL, 0), PALETTE[6])


def test_local_file_size_limit(tmp_path: Path) -> None:
    [source] = write_solids(tmp_path, 1)
    policy = FetchPolicy(max_bytes=100)
    [outcome] = build_collage([source], SMALL, policy=policy).outcomes
    assert outcome.error_code == "too_large"


def test_read_local_reads_up_to_the_limit_exactly(tmp_path: Path) -> None:
    path = tmp_path / "cover.bin"
    path.write_bytes(b"x" * 100)
    assert read_local(str(path), 100) == b"x" * 100
    with pytest.raises(CoverError) as caught:
        read_local(str(path), 99)
    assert caught.value.code == "too_large"


def test_read_local_reads_a_pipe_without_a_size(tmp_path: Path) -> None:
    fifo = tmp_path / "cover.fifo"
    os.mkfifo(fifo)  # st_size 0: read up to the limit
    writer = threading.Thread(target=fifo.write_bytes, args=(b"y" * 5000,))
    writer.start()
    try:
        assert read_local(str(fifo), 10_000) == b"y" * 5000
    finally:
        writer.join(timeout=10)


@pytest.fixture
def server():
    with CoverServer() as running:
        yield running


def test_downloads_reuse_connections_and_name_failures(server: CoverServer) -> None:
    urls = [server.add(f"/c{i}.jpg", solid_jpeg(PALETTE[i])) for i in range(6)]
    urls[2] = server.fault("/gone.jpg", "status", code=404)
    urls[4] = server.fault("/page.jpg", "html")
    result = build_collage(urls, SMALL, policy=LOOPBACK, max_workers=3)
    codes = {o.index: o.error_code for o in result.failed}
    assert codes == {2: "http_status", 4: "not_an_image"}
    assert "404" in result.outcomes[2].error
    fill, _ = placeholder_colours(SMALL.background)
    page = result.pages[0]
    assert cell_colour(page, SMALL, 2) == pytest.approx(fill, abs=6)
    for slot in (0, 1, 3, 5):
        assert close(cell_colour(page, SMALL, slot), PALETTE[slot])
    assert 1 <= server.connections <= 3
    delivered = sum(o.bytes for o in result.outcomes if o.ok)
    assert result.bytes_downloaded == delivered > 0
    assert result.download_seconds > 0 and result.render_seconds > 0


def test_downloads_overlap(server: CoverServer) -> None:
    server.latency = 0.2
    urls = [server.add(f"/c{i}.jpg", solid_jpeg(PALETTE[i])) for i in range(6)]
    result = build_collage(urls, SMALL, policy=LOOPBACK, max_workers=6)
    assert not result.failed
    # Six covers that each take 0.2 s to arrive: summed fetch time is about six times the
    # wall time, which only happens when they are fetched at the same time.
    assert result.download_seconds > 3 * result.wall_seconds


def test_local_files_and_urls_mix(server: CoverServer, tmp_path: Path) -> None:
    local = write_solids(tmp_path, 2)
    url = server.add("/remote.jpg", solid_jpeg(PALETTE[5]))
    result = build_collage([local[0], url, local[1]], SMALL, policy=LOOPBACK)
    assert not result.failed
    assert close(cell_colour(result.pages[0], SMALL, 1), PALETTE[5])
    assert result.bytes_downloaded == result.outcomes[1].bytes


def test_loopback_is_refused_unless_allowed(server: CoverServer) -> None:
    url = server.add("/c.jpg", solid_jpeg(PALETTE[0]))
    result = build_collage([url], SMALL, policy=POLICY)
    assert result.pages == []
    assert result.outcomes[0].error_code == "address_blocked"
    assert server.hits["/c.jpg"] == 0 and server.connections == 0


def test_past_deadline_fetches_nothing(server: CoverServer) -> None:
    urls = [server.add(f"/c{i}.jpg", solid_jpeg(PALETTE[i])) for i in range(3)]
    result = build_collage(urls, SMALL, policy=LOOPBACK, deadline=time.monotonic() - 1)
    assert result.pages == []
    assert {o.error_code for o in result.outcomes} == {"deadline"}
    assert sum(server.hits.values()) == 0


def test_an_unexpected_error_propagates_without_hanging(tmp_path: Path, monkeypatch) -> None:
    import threading

    from collage.engine import pipeline

    sources = write_solids(tmp_path, 10) * 3

    def broken(data: bytes, layout: Layout):
        raise RuntimeError("bug in decoding")

    monkeypatch.setattr(pipeline, "decode_tile", broken)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            build_collage(sources, SMALL, policy=POLICY, max_workers=2)
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "build_collage hung after a worker error"
    assert [type(error) for error in raised] == [RuntimeError]
