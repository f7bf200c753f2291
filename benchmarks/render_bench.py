"""Render benchmark: this engine against naive Pillow, ImageMagick, pyvips and the floor.

Each method renders the same 35 synthetic covers into one 5x7 collage of 216x384 tiles at q95,
as a whole fresh process (interpreter start and imports included), interleaved A B C A B C so
machine noise hits all alike; the median wall time, CPU time (user+sys) and peak RSS of each
child are printed with ratios against the engine. Then: tile quality (PSNR against a full-size
LANCZOS reference, plus a contact sheet PNG to look at) and a download run from a loopback
CoverServer with 0.1 s latency per request. Targets are printed MET / NOT MET; `--quick` (CI)
runs fewer repetitions and always exits 0, a full run exits 1 when a target is missed.

    python benchmarks/render_bench.py [--quick] [--runs N] [--out-dir .bench]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROWS, COLS, TILE, QUALITY, COVERS = 5, 7, (216, 384), 95, 35
SIZES = ((1080, 1920), (720, 1280))
LATENCY, WORKERS = 0.1, 8
CHILD_TIMEOUT = 120.0
ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"


# --- the methods, as child processes ---------------------------------------------------------


def covers_in(folder: str) -> list[str]:
    return sorted(str(p) for p in Path(folder).iterdir() if p.suffix == ".jpg")


def crop_box(size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centre crop of `size` with the tile's aspect ratio (what 'crop' fit shows)."""
    width, height = size
    scale = max(TILE[0] / width, TILE[1] / height)
    crop_w, crop_h = TILE[0] / scale, TILE[1] / scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def worker_naive(folder: str, out: str) -> None:
    """What one writes first: decode every cover in full, LANCZOS to the tile, paste, save."""
    from PIL import Image

    canvas = Image.new("RGB", (COLS * TILE[0], ROWS * TILE[1]))
    for slot, path in enumerate(covers_in(folder)):
        with Image.open(path) as image:
            full = image.convert("RGB")
        tile = full.resize(TILE, Image.Resampling.LANCZOS, box=crop_box(full.size))
        row, col = divmod(slot, COLS)
        canvas.paste(tile, (col * TILE[0], row * TILE[1]))
    canvas.save(out, "JPEG", quality=QUALITY)


def worker_floor(folder: str, out: str) -> None:
    """The least any Pillow renderer must do: draft-decode each cover (2 threads), encode once."""
    from PIL import Image

    def draft(path: str) -> Image.Image:
        image = Image.open(path)
        image.draft("RGB", TILE)
        image.load()
        return image

    canvas = Image.new("RGB", (COLS * TILE[0], ROWS * TILE[1]))
    with ThreadPoolExecutor(2) as pool:
        for slot, image in enumerate(pool.map(draft, covers_in(folder))):
            row, col = divmod(slot, COLS)
            canvas.paste(image.crop((0, 0, *TILE)), (col * TILE[0], row * TILE[1]))
    canvas.save(out, "JPEG", quality=QUALITY)


def worker_pyvips(folder: str, out: str) -> None:
    import pyvips

    tiles = [
        pyvips.Image.thumbnail(path, TILE[0], height=TILE[1], crop="centre")
        for path in covers_in(folder)
    ]
    pyvips.Image.arrayjoin(tiles, across=COLS).jpegsave(out, Q=QUALITY)


def worker_task(folder: str, out: str, thumbnail: bool = False) -> None:
    """build_collage as the collage task calls it: with the contact sheet's thumbnail or not
    (the pair measures what the thumbnail costs the task; S3 writes are not timed)."""
    from collage.collage_task import THUMBNAIL_WIDTH
    from collage.engine.fetch_policy import FetchPolicy
    from collage.engine.pipeline import build_collage
    from collage.engine.render import Layout

    width = THUMBNAIL_WIDTH if thumbnail else None
    result = build_collage(covers_in(folder), Layout(), policy=FetchPolicy(), thumbnail_width=width)
    Path(out).write_bytes(result.pages[0])
    if result.thumbnail is not None:
        Path(out).with_suffix(".thumb.jpg").write_bytes(result.thumbnail)


def worker_task_thumbnail(folder: str, out: str) -> None:
    worker_task(folder, out, thumbnail=True)


WORKERS_BY_NAME = {
    "naive": worker_naive,
    "floor": worker_floor,
    "pyvips": worker_pyvips,
    "task": worker_task,
    "task+thumb": worker_task_thumbnail,
}


def command(method: str, folder: Path, out: Path) -> list[str]:
    if method == "engine":  # the `collage` command users run, installed next to this Python
        script = Path(sys.executable).with_name("collage")
        start = [str(script)] if script.exists() else [sys.executable, "-m", "collage_tools.cli"]
        return [*start, "render", "-o", str(out), str(folder)]
    if method == "montage":
        geometry = f"{TILE[0]}x{TILE[1]}"
        return [
            "montage",
            "-define",
            f"jpeg:size={geometry}",
            *covers_in(str(folder)),
            "-thumbnail",
            f"{geometry}^",
            "-gravity",
            "center",
            "-extent",
            geometry,
            "-tile",
            f"{COLS}x{ROWS}",
            "-geometry",
            "+0+0",
            "-quality",
            str(QUALITY),
            str(out),
        ]
    # Imported, not run as a script, so that the child uses this module's cached bytecode
    # as the engine uses its own (a script is compiled afresh on every run).
    worker = f"import sys; sys.path.insert(0, {str(BENCH_DIR)!r}); import render_bench as b; "
    worker += "sys.exit(b.main())"
    return [sys.executable, "-c", worker, "--worker", method, str(folder), str(out)]


def compile_bytecode() -> None:
    """Write the .pyc files of the engine and of this module before any timed run.

    An installed package has them, and the first run writes them anyway, unless
    PYTHONDONTWRITEBYTECODE is set (as on some CI machines): then every child would compile
    the engine's modules afresh (~12 ms a run) and the figures would measure the compiler.
    """
    import compileall

    import collage

    for folder in (Path(collage.__file__).parent, BENCH_DIR):
        compileall.compile_dir(folder, quiet=1)


LABELS = {
    "engine": "engine (collage render)",
    "naive": "naive Pillow",
    "montage": "ImageMagick montage",
    "pyvips": "pyvips",
    "floor": "floor (draft + encode)",
    "task": "collage task's render",
    "task+thumb": "collage task + thumbnail",
}


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def median(self, name: str) -> float:
        return statistics.median(getattr(self, name))


# Peak RSS of a child is only honest when its parent is small: Linux counts the memory of the
# process a child was forked from (and exec'd over) in the child's ru_maxrss. So children are
# started by this lean launcher, itself started before the benchmark loads Pillow or covers.
LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["log"], "wb") as log:
        started = time.perf_counter()
        child = subprocess.Popen(job["argv"], stdout=subprocess.DEVNULL, stderr=log, cwd=job["cwd"])
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > job["timeout"]:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.001)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    reply = [child.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024]
    print(json.dumps(reply), flush=True)
"""


class Launcher:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-S", "-c", LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], scratch: Path) -> tuple[float, float, float]:
        """(wall s, user+sys s, peak RSS MB) of one child process, bounded by CHILD_TIMEOUT."""
        log = scratch / "child.log"
        job = {"argv": argv, "cwd": str(ROOT), "log": str(log), "timeout": CHILD_TIMEOUT}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        code, wall, cpu, rss = json.loads(self.process.stdout.readline())
        if code != 0:
            raise RuntimeError(f"{argv[:4]} failed ({code}): {log.read_text()[-500:]}")
        return wall, cpu, rss

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


# --- quality ---------------------------------------------------------------------------------


def psnr(a, b) -> float:
    from PIL import ImageChops

    histogram = ImageChops.difference(a, b).histogram()
    squares = sum(value * value * count for value, count in enumerate(histogram[:256]))
    squares += sum(value * value * count for value, count in enumerate(histogram[256:512]))
    squares += sum(value * value * count for value, count in enumerate(histogram[512:]))
    mse = squares / (a.width * a.height * 3)
    return 99.0 if mse == 0 else 10 * math.log10(255 * 255 / mse)


def quality(collage_path: Path, folder: Path, sheet_path: Path) -> float:
    """Mean per-tile PSNR of the engine's collage against full-size LANCZOS tiles."""
    from PIL import Image

    engine = Image.open(collage_path).convert("RGB")
    reference = Image.new("RGB", engine.size)
    scores = []
    for slot, path in enumerate(covers_in(str(folder))):
        with Image.open(path) as image:
            full = image.convert("RGB")
        tile = full.resize(TILE, Image.Resampling.LANCZOS, box=crop_box(full.size))
        row, col = divmod(slot, COLS)
        box = (col * TILE[0], row * TILE[1], (col + 1) * TILE[0], (row + 1) * TILE[1])
        reference.paste(tile, box[:2])
        scores.append(psnr(engine.crop(box), tile))
    sheet = Image.new("RGB", (engine.width * 2 + 16, engine.height), (255, 255, 255))
    sheet.paste(engine, (0, 0))
    sheet.paste(reference, (engine.width + 16, 0))
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(sheet_path, "PNG", compress_level=1)
    return statistics.fmean(scores)


# --- downloads -------------------------------------------------------------------------------


def download_runs(folder: Path, runs: int) -> tuple[float, int, int]:
    """Median wall time of build_collage over loopback, connections of the last run, failures."""
    from collage.collage_task import THUMBNAIL_WIDTH
    from collage.engine.download import FetchPolicy
    from collage.engine.pipeline import build_collage
    from collage.engine.render import Layout
    from collage_tools.cover_server import CoverServer
    from collage_tools.loopback import local_guard

    walls, connections, failures = [], 0, 0
    policy = FetchPolicy(address_guard=local_guard(True))
    for _ in range(runs + 1):  # the first run warms imports and caches; not counted
        with CoverServer(latency=LATENCY) as server:
            urls = server.add_directory(folder, "/covers")
            started = time.perf_counter()
            result = build_collage(  # as the collage task calls it
                urls, Layout(), policy=policy, max_workers=WORKERS, thumbnail_width=THUMBNAIL_WIDTH
            )
            walls.append(time.perf_counter() - started)
            connections, failures = server.connections, len(result.failed)
    return statistics.median(walls[1:]), connections, failures


# What `collage render` of local files imports before its first cover, against what the floor
# (a bare Pillow script with a thread pool) imports: the start-up a user pays on every call.
STARTUP_IMPORTS = {
    "engine": "import collage_tools.cli, collage_tools.commands.render, collage.engine.pipeline",
    "floor": "from PIL import Image, JpegImagePlugin; import concurrent.futures",
}
STARTUP_SLACK_MS = 25  # the target: the engine starts at most this much later than the floor


def startup_ms(runs: int, launcher: Launcher, scratch: Path) -> dict[str, float]:
    """Median wall ms of a process that only imports, for the engine and the floor, interleaved."""
    walls: dict[str, list[float]] = {name: [] for name in STARTUP_IMPORTS}
    for _ in range(2 * runs + 1):  # the first round warms up; not counted
        for name, statement in STARTUP_IMPORTS.items():
            walls[name].append(launcher.run([sys.executable, "-c", statement], scratch)[0])
    return {name: statistics.median(times[1:]) * 1000 for name, times in walls.items()}


def print_breakdown(
    folder: Path, runs: int, launcher: Launcher, scratch: Path, verdicts: Verdicts
) -> None:
    """Where the engine's extra time goes: its own work in-process, and its imports."""
    from collage.engine.download import FetchPolicy
    from collage.engine.pipeline import build_collage
    from collage.engine.render import Layout

    paths = covers_in(str(folder))
    timings: dict[str, list[float]] = {"engine": [], "floor": []}
    for _ in range(runs + 1):  # the first round warms up; not counted
        started = time.perf_counter()
        build_collage(paths, Layout(), policy=FetchPolicy())
        timings["engine"].append(time.perf_counter() - started)
        started = time.perf_counter()
        worker_floor(str(folder), str(scratch / "floor-in-process.jpg"))
        timings["floor"].append(time.perf_counter() - started)
    engine, floor = (statistics.median(t[1:]) for t in timings.values())
    imports = {}
    for name, module in (
        ("light", "collage.engine.url_guard"),
        ("download", "collage.engine.download"),
    ):
        walls = [
            launcher.run([sys.executable, "-c", f"import {module}"], scratch)[0]
            for _ in range(runs + 1)
        ]
        imports[name] = statistics.median(walls[1:])
    extra = imports["download"] - imports["light"]
    print(
        f"breakdown: in-process (no interpreter start, no imports) build_collage "
        f"{engine * 1000:.0f} ms vs floor {floor * 1000:.0f} ms ({engine / floor:.2f} x); "
        f"importing collage.engine.download (requests, urllib3) adds {extra * 1000:.0f} ms"
    )
    startup = startup_ms(runs, launcher, scratch)
    added = startup["engine"] - startup["floor"]
    print(
        f"start-up: importing what collage render loads {startup['engine']:.0f} ms vs the "
        f"floor's imports {startup['floor']:.0f} ms ({added:+.0f} ms), whole processes"
    )
    verdicts.check(
        f"start-up <= floor's + {STARTUP_SLACK_MS} ms",
        added <= STARTUP_SLACK_MS,
        f"{added:+.0f} ms",
    )


# --- the report --------------------------------------------------------------------------------


@dataclass
class Verdicts:
    lines: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    def check(self, name: str, met: bool, figure: str) -> None:
        self.lines.append(f"  {'MET    ' if met else 'NOT MET'}  {name}: {figure}")
        if not met:
            self.missed.append(name)


def available(method: str) -> str | None:
    """None when `method` can run here, else why not."""
    if method == "montage" and shutil.which("montage") is None:
        return "ImageMagick `montage` not installed (apt-get install imagemagick)"
    if method == "pyvips":
        probe = subprocess.run(
            [sys.executable, "-c", "import pyvips"], capture_output=True, timeout=60, check=False
        )
        if probe.returncode != 0:
            return "pyvips not importable (pip install pyvips; needs libvips42)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions; always exit 0")
    parser.add_argument("--runs", type=int, help="repetitions per method (default 7, quick 2)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / ".bench")
    parser.add_argument(
        "--worker", nargs=3, metavar=("METHOD", "DIR", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        method, folder, out = args.worker
        WORKERS_BY_NAME[method](folder, out)
        return 0
    launcher = Launcher()  # first, while this process is still small
    try:
        return run_all(args, launcher)
    finally:
        launcher.close()


def run_all(args: argparse.Namespace, launcher: Launcher) -> int:
    from collage_tools.covers import write_covers

    runs = args.runs or (2 if args.quick else 7)
    methods = ["engine", "naive", "montage", "pyvips", "floor", "task", "task+thumb"]
    skipped = {m: why for m in methods if (why := available(m))}
    active = [m for m in methods if m not in skipped]
    verdicts = Verdicts()
    print(
        f"render-bench: {COVERS} JPEG covers -> one {ROWS}x{COLS} collage of {TILE[0]}x{TILE[1]} "
        f"tiles at q{QUALITY}; whole processes, median of {runs} interleaved runs; "
        f"{os.cpu_count()} cores{' (quick)' if args.quick else ''}"
    )
    for method, why in skipped.items():
        print(f"  skipped {LABELS[method]}: {why}")

    with tempfile.TemporaryDirectory(prefix="render-bench-") as temp:
        scratch = Path(temp)
        results: dict[tuple[int, int], dict[str, Runs]] = {}
        folders = {}
        for size in SIZES:
            folder = scratch / f"covers-{size[0]}x{size[1]}"
            write_covers(folder, COVERS, size)
            folders[size] = folder
        compile_bytecode()
        for method in active:  # warm-up: page cache, lazily built caches; not counted
            launcher.run(command(method, folders[SIZES[1]], scratch / "warm.jpg"), scratch)
        for size in SIZES:
            folder, table = folders[size], {m: Runs() for m in active}
            for _ in range(runs):
                for method in active:
                    wall, cpu, rss = launcher.run(
                        command(method, folder, scratch / f"{method}.jpg"), scratch
                    )
                    table[method].wall.append(wall)
                    table[method].cpu.append(cpu)
                    table[method].rss_mb.append(rss)
            results[size] = table
            print_table(size, table)
        judge(results, verdicts)
        judge_thumbnail(results, verdicts)

        big = SIZES[0]
        print_breakdown(folders[big], runs, launcher, scratch, verdicts)
        for size in SIZES:  # each input size takes its own decode path (draft scale, resize)
            label = f"{size[0]}x{size[1]}"
            engine_out = scratch / f"engine-{label}.jpg"
            launcher.run(command("engine", folders[size], engine_out), scratch)
            suffix = "" if size == big else f"_{label}"
            sheet = args.out_dir / f"render_contact_sheet{suffix}.png"
            score = quality(engine_out, folders[size], sheet)
            print(
                f"quality {label}: mean tile PSNR {score:.1f} dB vs full-size LANCZOS; "
                f"contact sheet {sheet}"
            )
            verdicts.check(f"mean tile PSNR >= 33 dB ({label})", score >= 33, f"{score:.1f} dB")
            if size == big:
                collage_bytes = engine_out.stat().st_size

        download_wall, connections, failures = download_runs(folders[big], runs)
        network_floor = LATENCY * math.ceil(COVERS / WORKERS)
        cpu_floor = results[big]["floor"].median("wall") if "floor" in results[big] else 0.0
        bound = 1.25 * max(network_floor, cpu_floor)
        print(
            f"downloads: build_collage of {COVERS} covers from a loopback CoverServer "
            f"(latency {LATENCY * 1000:.0f} ms, max_workers={WORKERS}): "
            f"{download_wall * 1000:.0f} ms; network floor {network_floor * 1000:.0f} ms, "
            f"CPU floor {cpu_floor * 1000:.0f} ms; connections {connections}, failures {failures}"
        )
        verdicts.check(
            "downloads <= 1.25 x max(network, CPU floor)",
            download_wall <= bound and failures == 0,
            f"{download_wall * 1000:.0f} ms vs {bound * 1000:.0f} ms",
        )
        verdicts.check(
            f"pooled connections <= max_workers ({WORKERS})",
            0 < connections <= WORKERS,
            str(connections),
        )

    engine = results[big]["engine"]
    figures = {
        "engine_cpu_seconds": round(engine.median("cpu"), 3),
        "engine_wall_seconds": round(engine.median("wall"), 3),
        "task_wall_seconds": round(download_wall, 3),
        "peak_rss_mb": round(max(engine.rss_mb), 1),
        "collage_bytes": collage_bytes,
    }
    (args.out_dir / "render.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(f"figures for the cost model: {args.out_dir / 'render.json'}")
    print("targets:")
    print("\n".join(verdicts.lines))
    if verdicts.missed:
        print(f"render-bench: targets not met: {'; '.join(verdicts.missed)}")
        return 0 if args.quick else 1
    print("render-bench: all targets met")
    return 0


def judge_thumbnail(results: dict[tuple[int, int], dict[str, Runs]], verdicts: Verdicts) -> None:
    """The contact sheet's thumbnail may cost the collage task at most 5% (CPU and memory)."""
    for size, table in results.items():
        plain, thumb = table["task"], table["task+thumb"]
        ratios = {name: thumb.median(name) / plain.median(name) for name in ("cpu", "rss_mb")}
        verdicts.check(
            f"thumbnail adds <= 5% to the task's CPU and peak RSS ({size[0]}x{size[1]})",
            all(ratio <= 1.05 for ratio in ratios.values()),
            f"cpu {ratios['cpu']:.3f} x, peak RSS {ratios['rss_mb']:.3f} x "
            f"(wall {thumb.median('wall') / plain.median('wall'):.3f} x)",
        )


def print_table(size: tuple[int, int], table: dict[str, Runs]) -> None:
    engine = table["engine"].median("wall")
    print(f"covers {size[0]}x{size[1]}:")
    print(f"  {'method':26} {'wall ms':>8} {'cpu ms':>8} {'peak MB':>8} {'x engine':>9}")
    for method, runs in table.items():
        wall = runs.median("wall")
        print(
            f"  {LABELS[method]:26} {wall * 1000:8.0f} {runs.median('cpu') * 1000:8.0f} "
            f"{max(runs.rss_mb):8.1f} {wall / engine:9.2f}"
        )


def judge(results: dict[tuple[int, int], dict[str, Runs]], verdicts: Verdicts) -> None:
    for size, table in results.items():
        engine = table["engine"].median("wall")
        label = f"{size[0]}x{size[1]}"
        naive = table["naive"].median("wall")
        verdicts.check(
            f"engine <= 0.25 x naive Pillow ({label})",
            engine <= 0.25 * naive,
            f"{engine / naive:.2f} x ({engine * 1000:.0f} vs {naive * 1000:.0f} ms)",
        )
        if "floor" in table:
            floor = table["floor"].median("wall")
            verdicts.check(
                f"engine <= 1.15 x floor ({label})",
                engine <= 1.15 * floor,
                f"{engine / floor:.2f} x ({engine * 1000:.0f} vs {floor * 1000:.0f} ms)",
            )
        for rival in ("montage", "pyvips"):
            if rival in table:
                other = table[rival].median("wall")
                verdicts.check(
                    f"engine faster than {LABELS[rival]} ({label})",
                    engine < other,
                    f"{engine * 1000:.0f} vs {other * 1000:.0f} ms",
                )
        peak = max(table["engine"].rss_mb)
        verdicts.check(f"engine peak RSS <= 80 MB ({label})", peak <= 80, f"{peak:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
