"""`collage render`: options, pages on disk, summary and exit status."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
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


# --- hostile paths: where -o points, what a folder holds ----------------------------------------


def collage_process(*argv: str) -> subprocess.CompletedProcess:
    """The real entry point in a process of its own: a hang fails on the timeout, not forever."""
    command = [sys.executable, "-m", "collage_tools.cli", "render", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def one_line_error(err: str, expected: str) -> bool:
    return expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_output_into_missing_folders_makes_them(tmp_path: Path, capsys) -> None:
    out = tmp_path / "a" / "b" / "c" / "out.jpg"
    assert main(["render", "-o", str(out), "--tile", "32x32", solid(tmp_path, "x.jpg", RED)]) == 0
    assert Image.open(out).size == (7 * 32, 5 * 32)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.jpg"]  # no temp file left


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("{tmp}", "-o {tmp} is a folder; give a file name, e.g. {tmp}/collage.jpg"),
        ("{tmp}/new/", "-o {tmp}/new/ is a folder; give a file name"),
        ("{tmp}/x.jpg/c.jpg", "-o {tmp}/x.jpg/c.jpg: {tmp}/x.jpg is not a folder"),
        ("{tmp}/x.jpg/deeper/c.jpg", "{tmp}/x.jpg is not a folder"),
    ],
)
def test_an_output_that_can_never_be_a_file_exits_2(tmp_path: Path, capsys, output, expected):
    cover = solid(tmp_path, "x.jpg", RED)
    before = sorted(tmp_path.rglob("*"))
    assert main(["render", "-o", output.format(tmp=tmp_path), cover]) == 2
    assert one_line_error(capsys.readouterr().err, expected.format(tmp=tmp_path))
    assert sorted(tmp_path.rglob("*")) == before  # nothing made, nothing rendered


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: sysfs even for root, else a mode-0555 one."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    return folder


def test_an_unwritable_output_exits_1_with_the_reason(tmp_path: Path) -> None:
    out = unwritable_folder(tmp_path) / "collage-test.jpg"
    done = collage_process("-o", str(out), "--tile", "32x32", solid(tmp_path, "x.jpg", RED))
    assert done.returncode == 1
    assert one_line_error(done.stderr, f"collage render: cannot write {out}: Permission denied")
    assert not out.exists()


def device(tmp_path: Path, name: str) -> Path:
    """/dev/full or /dev/null to write to. As root, a node of our own with the same numbers: a
    regression that renamed a file over its output must not replace the machine's devices."""
    if os.geteuid() != 0:
        return Path("/dev") / name  # /dev is not ours to write: nothing can replace it
    node = tmp_path / name
    numbers = {"full": (1, 7), "null": (1, 3)}[name]
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(*numbers))
    return node


def test_a_full_device_exits_1_and_stays_a_device(tmp_path: Path) -> None:
    full = device(tmp_path, "full")  # every write to it fails with ENOSPC
    done = collage_process("-o", str(full), "--tile", "32x32", solid(tmp_path, "x.jpg", RED))
    assert done.returncode == 1
    expected = f"collage render: cannot write {full}: No space left on device"
    assert one_line_error(done.stderr, expected)
    assert full.is_char_device()  # written in place, never renamed over
    assert not list(full.parent.glob(".full*"))


def test_a_full_disk_leaves_no_temp_file_and_keeps_the_old_page(tmp_path, monkeypatch, capsys):
    import errno

    out = tmp_path / "c.jpg"
    out.write_bytes(b"previous")

    def no_space(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    assert main(["render", "-o", str(out), "--tile", "32x32", solid(tmp_path, "x.jpg", RED)]) == 1
    assert one_line_error(capsys.readouterr().err, f"cannot write {out}: No space left on device")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jpg", "x.jpg"]


def test_a_device_takes_one_page_and_a_fifo_is_refused(tmp_path: Path, capsys) -> None:
    covers = [solid(tmp_path, f"{n}.jpg", RED) for n in range(3)]
    one_row = ["--rows", "1", "--cols", "2", "--tile", "32x32"]
    null = device(tmp_path, "null")
    assert main(["render", "-o", str(null), *one_row, *covers[:2]]) == 0
    assert null.is_char_device()
    assert main(["render", "-o", str(null), *one_row, *covers]) == 2
    assert one_line_error(capsys.readouterr().err, f"-o {null} is a device, which takes one page")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    done = collage_process("-o", str(fifo), *covers)  # opening it would wait for a reader
    assert done.returncode == 2
    assert one_line_error(done.stderr, f"-o {fifo} is a FIFO; give a file name")


def test_a_folder_is_read_only_inside_and_its_fifos_are_never_opened(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = solid(outside, "secret.jpg", RED)
    folder = tmp_path / "covers"
    (folder / "sub").mkdir(parents=True)
    solid(folder, "a.jpg", BLUE)
    solid(folder / "sub", "deep.jpg", RED)
    (folder / "b-inside.jpg").symlink_to(folder / "a.jpg")
    (folder / "c-out.jpg").symlink_to(secret)
    (folder / "d-up.jpg").symlink_to(Path("..") / "outside" / "secret.jpg")
    os.mkfifo(folder / "e.fifo")
    (folder / "f-to-fifo.jpg").symlink_to(folder / "e.fifo")
    (folder / "g-broken.jpg").symlink_to(folder / "missing.jpg")
    out = tmp_path / "c.jpg"

    done = collage_process(
        "-o", str(out), "--rows", "1", "--cols", "2", "--tile", "32x32", str(folder)
    )

    assert done.returncode == 0, done.stderr
    skipped = done.stderr.splitlines()
    assert skipped == [
        f"collage render: skipped {folder}/c-out.jpg: a symlink out of the folder (to {secret})",
        f"collage render: skipped {folder}/d-up.jpg: a symlink out of the folder (to {secret})",
        f"collage render: skipped {folder}/e.fifo: not a regular file (a FIFO)",
        f"collage render: skipped {folder}/f-to-fifo.jpg: not a regular file (a FIFO)",
        f"collage render: skipped {folder}/g-broken.jpg: a broken symlink",
        f"collage render: skipped {folder}/sub: not a regular file (a folder)",
    ]
    assert "2 covers: 2 rendered, 0 failed; 1 page(s)" in done.stdout
    page = Image.open(out)
    assert close(page.getpixel((16, 16)), BLUE) and close(page.getpixel((48, 16)), BLUE)
    # Named directly, a file outside any folder given is read, as asked.
    done = collage_process("-o", str(out), "--rows", "1", "--cols", "1", "--tile", "32x32", secret)
    assert done.returncode == 0 and close(Image.open(out).getpixel((16, 16)), RED)


def test_a_folder_file_that_is_no_image_is_skipped_not_given_a_cell(tmp_path: Path, capsys) -> None:
    # 4 covers fill one 2x2 page; a notes file sorted first must not push one onto a page 2.
    folder = tmp_path / "covers"
    folder.mkdir()
    (folder / "a-notes.txt").write_text("covers for the january campaign\n")
    for name in ("b.jpg", "c.jpg", "d.jpg", "e.jpg"):
        solid(folder, name, BLUE)
    Image.new("RGB", (8, 8)).save(folder / "f.tif")  # an image, but a format the engine refuses
    out = tmp_path / "c.jpg"
    grid = ["--rows", "2", "--cols", "3", "--tile", "32x32"]

    assert main(["render", "-o", str(out), *grid, str(folder)]) == 0

    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"collage render: skipped {folder}/a-notes.txt: not an image"
    ]
    assert "5 covers: 4 rendered, 1 failed; 1 page(s)" in captured.out
    assert "f.tif: unsupported_format: TIFF" in captured.out  # kept as a cover, named
    assert not (tmp_path / "c-2.jpg").exists()
    page = Image.open(out)
    assert all(close(page.getpixel((16 + 32 * col, 16)), BLUE) for col in range(3))
