"""`collage render`: options, pages on disk, summary and exit status."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from collage_tools.cli import main
from collage_tools.commands.render import page_paths
from collage_tools.cover_server import CoverServer

RED, BLUE = (230, 30, 30), (30, 30, 230)


def solid(folder: Path, name: str, colour, size=(270, 480)) -> str:
    path = folder / name
    Image.new("RGB", size, colour).save(path, "JPEG", quality=95)
    return str(path)


def close(pixel, colour, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


def test_page_paths() -> None:
    assert page_paths(Path("out/c.jpg"), 3) == [
        Path("out/c.jpg"),
        Path("out/c-2.jpg"),
        Path("out/c-3.jpg"),
    ]
    assert page_paths(Path("c.jpg"), 0) == []


def test_renders_files_with_the_given_layout(tmp_path: Path, capsys) -> None:
    covers = [solid(tmp_path, "a.jpg", RED), solid(tmp_path, "b.jpg", BLUE)]
    out = tmp_path / "out" / "grid.jpg"
    argv = ["render", "-o", str(out), "--rows", "1", "--cols", "2", "--tile", "64x96"]
    code = main([*argv, "--background", "#00ff00", "--quality", "90", *covers])
    assert code == 0
    page = Image.open(out)
    assert page.size == (128, 96)
    assert close(page.getpixel((32, 48)), RED) and close(page.getpixel((96, 48)), BLUE)
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "2 covers: 2 rendered, 0 failed" in printed


def test_directory_pages_and_failures(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "covers"
    folder.mkdir()
    for index in range(3):
        solid(folder, f"{index}.jpg", (40 * index, 100, 100))
    (folder / ".hidden.jpg").write_bytes(b"not read")
    out = tmp_path / "c.jpg"
    argv = ["render", "-o", str(out), "--rows", "1", "--cols", "2", "--tile", "32x32"]
    code = main([*argv, str(folder), str(tmp_path / "missing.jpg")])
    assert code == 0
    assert out.exists() and (tmp_path / "c-2.jpg").exists()
    assert not (tmp_path / "c-3.jpg").exists()
    printed = capsys.readouterr().out
    assert "4 covers: 3 rendered, 1 failed; 2 page(s)" in printed
    assert "failed #4" in printed and "file_error" in printed


def test_contain_and_close_up_options(tmp_path: Path) -> None:
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 100), RED).save(wide)
    out = tmp_path / "c.jpg"
    argv = ["render", "-o", str(out), "--rows", "1", "--cols", "2", "--tile", "100x100"]
    argv += ["--fit", "contain", "--background", "#ffffff", "--on-failure", "close_up"]
    assert main([*argv, str(tmp_path / "missing.jpg"), str(wide)]) == 0
    page = Image.open(out)
    assert close(page.getpixel((50, 50)), RED)  # closed up into the first cell
    assert close(page.getpixel((50, 10)), (255, 255, 255))  # letterbox band
    assert close(page.getpixel((150, 50)), (255, 255, 255))  # second cell unused


def test_nothing_rendered_exits_1_and_writes_nothing(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"hello")
    out = tmp_path / "c.jpg"
    assert main(["render", "-o", str(out), str(junk)]) == 1
    assert not out.exists()
    captured = capsys.readouterr()
    assert "not_an_image" in captured.out and "nothing written" in captured.err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--tile", "216"], "--tile must look like 216x384"),
        (["--rows", "0"], "rows: Input should be greater than or equal to 1, got 0"),
        (["--background", "red"], "background must be a colour"),
        (["--timeout", "nan"], "timeout: Input should be a finite number, got nan"),
        (
            ["--rows", "20", "--cols", "20", "--tile", "2048x2048"],
            "collage render: rows x cols x tile_width x tile_height = 20 x 20 x 2048 x 2048 = a "
            "40960 x 40960 canvas of 1,677,721,600 pixels, over the cap of 80,000,000",
        ),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, capsys, option, message) -> None:
    cover = solid(tmp_path, "a.jpg", RED)
    assert main(["render", "-o", str(tmp_path / "c.jpg"), *option, cover]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c.jpg").exists()


def test_urls_need_allow_loopback(tmp_path: Path, capsys) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (90, 160), BLUE).save(buffer, "JPEG", quality=95)
    with CoverServer() as server:
        url = server.add("/cover.jpg", buffer.getvalue())
        out = tmp_path / "c.jpg"
        assert main(["render", "-o", str(out), url]) == 1
        assert server.hits["/cover.jpg"] == 0
        assert "address_blocked" in capsys.readouterr().out
        assert main(["render", "-o", str(out), "--allow-loopback", "--tile", "90x160", url]) == 0
        assert server.hits["/cover.jpg"] == 1
    page = Image.open(out)
    assert page.size == (7 * 90, 5 * 160)
    assert close(page.getpixel((45, 80)), BLUE)
