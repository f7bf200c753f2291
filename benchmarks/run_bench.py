"""`collage run` at scale: throughput against the collage task's own floor, memory, where the
time goes, and how often each cover was fetched (`make bench-run`).

For each size (default 1,000 and 10,000 creators, 35 covers each, the split benchmark's shape;
every cover URL distinct, served from a loopback server that counts requests per URL):
  A. the floor: the collage task's own work (download the covers, render, write the JPEG),
     in-process, for the same creators, spread over the same cores (a process per core);
  B. `collage run CSV --out DIR` as a user runs it, in a process of its own, its process tree's
     resident memory (the command, its moto server and every Lambda worker) sampled every 0.2 s.
Prints creators per second of each and their ratio (target: B within 1.5x of A at 1,000
creators, and the same ratio at 10,000), the peak RSS of B's tree (target < 2 GB at every size),
where B's time goes (start and split, the map, the report), and cover requests per distinct
cover URL during B (target 1.00).

Usage: benchmarks/run_bench.py [--creators 1000,10000] [--covers 35] [--quick] [--trace]
  (--quick: 20 creators of 5 covers, no targets: what the test of this benchmark runs;
  the 57,000-creator figure is run by hand: --creators 57000; --trace: instead, the stack in
  this process under tracemalloc, and what grew during the run, by line, per creator)
Exit status: 1 when a target is not met (not with --quick), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
RATIO_LIMIT = 1.5
RSS_LIMIT_MB = 2048
COVER_SIZE = (360, 640)  # a quarter of TikTok's 720x1280: a month of covers in minutes, not hours
PAGE = os.sysconf("SC_PAGE_SIZE")
RUN = "import sys; from collage_tools.cli import main; sys.exit(main(sys.argv[1:]))"


def write_csv(path: Path, base_url: str, creators: int, covers: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("creator_name,cover_url,updated_at\n")
        for n in range(creators):
            for k in range(covers):
                out.write(f"creator_{n:06d},{base_url}/{n}/{k}.jpg,2025-01-{1 + k % 28:02d}\n")


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


# ---------------------------------------------------------------------- A. the floor
def _floor_creator(job: tuple[list[str], str]) -> float:
    from collage.config import ProcessingConfig
    from collage.engine.fetch_policy import FetchPolicy
    from collage.engine.pipeline import build_collage
    from collage.engine.render import Layout
    from collage_tools.loopback import local_guard

    urls, target = job
    config = ProcessingConfig()
    started = time.perf_counter()
    result = build_collage(
        urls,
        Layout.from_config(config),
        policy=FetchPolicy.from_config(config, local_guard(True)),
        max_workers=config.max_workers,
    )
    for n, page in enumerate(result.pages):
        Path(f"{target}-{n}.jpg").write_bytes(page)
    return time.perf_counter() - started


def floor(base_url: str, creators: int, covers: int, work: Path) -> float:
    jobs = [
        ([f"{base_url}/{n}/{k}.jpg" for k in range(covers)], str(work / f"c{n}"))
        for n in range(creators)
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_floor_creator, jobs, chunksize=4))
    return time.perf_counter() - started


# ---------------------------------------------------------------------- B. collage run
def collage_run(csv: Path, out: Path) -> dict:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", RUN, "run", str(csv), "--out", str(out), "--allow-loopback"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            peak = max(peak, tree_rss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"run-bench: collage run failed ({child.returncode}):\n{stderr[-3000:]}")
    return {
        "wall": wall,
        "peak_mb": peak / 1e6,
        "summary": json.loads(stdout),
        "began": time.time() - wall,
    }


def where_time_goes(out: Path, run: dict, creators: int) -> dict:
    """From what the run left in --out: the collages' times and the tasks' own records."""
    collages = [p.stat().st_mtime for p in out.rglob("*.jpg") if ".collage" not in p.parts]
    task_seconds = 0.0
    for record in (out / ".collage" / "temp").rglob("results/*.json"):
        data = json.loads(record.read_text())
        task_seconds += data.get("download_seconds", 0) + data.get("render_seconds", 0)
    first, last = min(collages), max(collages)
    cores = os.cpu_count() or 1
    map_seconds = last - first
    return {
        "start_and_split_s": first - run["began"],
        "map_s": map_seconds,
        "report_and_exit_s": run["began"] + run["wall"] - last,
        "task_seconds_per_creator": task_seconds / creators,
        "map_seconds_per_creator_per_core": map_seconds * cores / creators,
    }


def bench(size: int, covers: int, quick: bool) -> dict:
    from collage_tools.cover_server import CoverServer
    from collage_tools.covers import make_cover

    images = [make_cover(n, COVER_SIZE) for n in range(8)]
    with CoverServer() as server, tempfile.TemporaryDirectory(prefix="run-bench-") as tmp:
        work = Path(tmp)
        base = server.add_prefix("/cov", images)
        csv = work / "month.csv"
        write_csv(csv, base, size, covers)
        (work / "floor").mkdir()
        floor_wall = floor(base, size, covers, work / "floor")
        server.hits.clear()
        run = collage_run(csv, work / "out")
        requests = sum(server.hits.values())
        distinct = len(server.hits)
        timing = where_time_goes(work / "out", run, size)
    result = {
        "creators": size,
        "covers_per_creator": covers,
        "floor_s": floor_wall,
        "run_s": run["wall"],
        "floor_creators_per_s": size / floor_wall,
        "run_creators_per_s": size / run["wall"],
        "ratio": run["wall"] / floor_wall,
        "peak_rss_mb": run["peak_mb"],
        "cover_requests_per_url": requests / max(distinct, 1),
        "distinct_urls": distinct,
        "collages": run["summary"].get("collages"),
        **timing,
    }
    return result


def trace(size: int, covers: int) -> None:
    """What the embedded stack's memory grows by during a run, per creator, by source line."""
    import tracemalloc

    from collage_tools.cover_server import CoverServer
    from collage_tools.covers import make_cover
    from collage_tools.emulator import LocalStack

    images = [make_cover(n, COVER_SIZE) for n in range(8)]
    with CoverServer() as server, tempfile.TemporaryDirectory(prefix="run-trace-") as tmp:
        work = Path(tmp)
        csv = work / "month.csv"
        write_csv(csv, server.add_prefix("/cov", images), size, covers)
        folders = {"OutputBucket": work / "out", "TempBucket": work / "out/.collage/temp"}
        with LocalStack(allow_loopback=True, folders=folders, work_dir=work / "spool") as stack:
            tracemalloc.start(int(os.environ.get("TRACE_DEPTH", "1")))
            before = tracemalloc.take_snapshot()
            started = stack.upload_csv(csv.read_bytes(), "csv-files/month.csv")
            stack.wait(started["name"], timeout=24 * 3600)
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
    grown = after.compare_to(before, "traceback")
    total = sum(stat.size_diff for stat in grown)
    print(
        f"{size:,} creators: the stack's Python memory grew {total / 1e6:.1f} MB during the run,"
        f" {total / size / 1e3:.1f} KB a creator; the largest growths:"
    )
    for stat in grown[:12]:
        frames = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in stat.traceback)
        print(f"  {stat.size_diff / 1e3:9.1f} KB  {frames}")


def show(result: dict, quick: bool) -> list[bool]:
    size = result["creators"]
    print(f"\n{size:,} creators x {result['covers_per_creator']} covers")
    print(
        f"  floor (task's own work, in-process, {os.cpu_count()} processes): "
        f"{result['floor_s']:.1f} s, {result['floor_creators_per_s']:.1f} creators/s"
    )
    print(
        f"  collage run: {result['run_s']:.1f} s, {result['run_creators_per_s']:.1f} creators/s,"
        f" {result['ratio']:.2f}x the floor"
    )
    print(f"  peak RSS of collage run's process tree: {result['peak_rss_mb']:.0f} MB")
    print(
        f"  where the time goes: start + split {result['start_and_split_s']:.1f} s, "
        f"map {result['map_s']:.1f} s, report + exit {result['report_and_exit_s']:.1f} s; "
        f"a task's own work {result['task_seconds_per_creator'] * 1000:.0f} ms a creator, "
        f"the map {result['map_seconds_per_creator_per_core'] * 1000:.0f} ms a creator a core"
    )
    print(
        f"  cover requests per distinct cover URL: {result['cover_requests_per_url']:.2f} "
        f"({result['distinct_urls']:,} URLs)"
    )
    if quick:
        return []
    checks = [
        ("throughput within 1.5x of the floor", result["ratio"] <= RATIO_LIMIT),
        ("peak RSS < 2 GB", result["peak_rss_mb"] < RSS_LIMIT_MB),
        ("each cover fetched once", f"{result['cover_requests_per_url']:.2f}" == "1.00"),
    ]
    for label, met in checks:
        print(f"  {label}: {'MET' if met else 'NOT MET'}")
    return [met for _, met in checks]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creators", default="1000,10000")
    parser.add_argument("--covers", type=int, default=35)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.trace:
        for size in [int(s) for s in args.creators.split(",")]:
            trace(size, args.covers)
        return 0
    sizes = [20] if args.quick else [int(s) for s in args.creators.split(",")]
    covers = 5 if args.quick else args.covers
    results, met = [], []
    for size in sizes:
        result = bench(size, covers, args.quick)
        results.append(result)
        met += show(result, args.quick)
    BENCH_DIR.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d")
    (BENCH_DIR / "run.json").write_text(json.dumps({"date": stamp, "results": results}, indent=2))
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
