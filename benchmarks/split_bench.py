"""The split step on a month's CSV: memory, time against the csv module, item sizes.

Generates a deterministic CSV (default 2,000,000 rows, ~57,000 creators with ~35 covers each,
rows in random creator order, TikTok-like URLs of 100-150 characters, ISO timestamps, a few bad
rows), then runs, as separate processes of this interpreter and interleaved A B A B:
  A. the floor: csv.reader over the file, counting rows, nothing else;
  B. collage.split.split_csv on the file, writing the items to a temp file (as the Lambda does).
Prints the medians of wall and CPU time, each process's peak RSS (from os.wait4), the time
ratio B/A, the largest map item, and MET / NOT MET for each target:
  peak RSS of B <= 512 MB; time ratio <= 2.0 (not with --covers-per-creator, where the
  aggregate step's peak RSS <= 512 MB is the other target); largest item < 256 KiB.
The time ratio is the median over the rounds of B / A within a round: the speed of these
machines drifts by 10-20% over tens of seconds, so a split is compared with the baseline run
just before it, not with one from another minute. The lowest and highest are printed too.

The Distributed Map limits behind these targets (AWS documentation):
- a state's input or output, so each map item a child receives, is at most 256 KiB (262,144
  bytes, UTF-8): https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
- Distributed mode runs up to 10,000 parallel child workflow executions (the concurrency we
  may set with MaxConcurrency):
  https://docs.aws.amazon.com/step-functions/latest/dg/concepts-map-process-modes.html
- the item source is one JSON array in S3 read by ItemReader (InputType JSON); its size limits
  are on https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html
  (not checked against a figure here: the page available offline states none).

Usage: benchmarks/split_bench.py [--rows N] [--quick] [--quote-all] [--covers-per-creator N]
  (--quick: 100,000 rows, one round; --quote-all: every field in quotes, as some exporters
  write CSVs; --covers-per-creator 2: 1,000,000 creators, and the aggregate step on them)
Exit status: 1 when a target is not met in full mode, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
RSS_LIMIT_MB = 512
RATIO_LIMIT = 2.0
ITEM_LIMIT = 256 * 1024
COVERS_PER_CREATOR = 35
HOSTS = [
    "p16-sign-va.tiktokcdn.com",
    "p16-sign-sg.tiktokcdn.com",
    "p77-sign-va.tiktokcdn.com",
    "p16-sign-useast2a.tiktokcdn.com",
    "p19-sign.tiktokcdn-us.com",
]
TAILS = [
    "~tplv-photomode-zoomcover:720:720.jpeg",
    "~tplv-dmt-logom:tos-useast2a-v-0068/o.image",
    "~c5_300x400.jpeg",
    "~tplv-noop.image",
]

BASELINE = """
import csv, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = sum(1 for _ in csv.reader(f))
print(rows)
"""
SPLIT = """
import json, sys
from collage.split import split_csv
with open(sys.argv[1], "rb") as raw, open(sys.argv[2], "wb") as out, open(sys.argv[4], "wb") as who:
    summary = split_csv(raw, out, 35, creators_out=who, spill_dir=sys.argv[3])
print(json.dumps(summary.to_dict()))
"""
GENERATE = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from split_bench import make_csv
rows, quote_all, per_creator = map(int, sys.argv[3:6])
make_csv(Path(sys.argv[2]), rows, quote_all=bool(quote_all), per_creator=per_creator)
"""
# The aggregate step on the split's creators list, each with a result record like the collage
# task's (one creator in 20 partial, with a failed cover). S3 is a local stand-in here (records
# made on request, the report and the contact sheet's pages counted and dropped): what is
# measured is the step's own memory, which must not grow with the number of creators.
AGGREGATE = """
import json, sys, zlib
from collage.aggregate import finish_run
from collage.contracts import AggregateEvent

FAILURE = {"line": 7, "url": "https://cdn.example/" + "x" * 120 + ".jpg", "code": "http_status",
           "error": "HTTP 404 from https://cdn.example/" + "x" * 120 + ".jpg"}

class LocalStore:
    written = {".json": 0, ".html": 0}
    pages = 0
    def iter_lines(self, bucket, key):
        with open(sys.argv[1], "rb") as lines:
            yield from filter(None, (line.rstrip(b"\\n") for line in lines))
    def get_json(self, bucket, key):
        if not key.endswith(".json") or "/results/" not in key:
            return []
        name = key.rsplit("/", 1)[1][: -len(".json")]
        partial = zlib.crc32(name.encode()) % 20 == 0
        return {"creator": name, "name": name, "status": "partial" if partial else "ok",
                "error": None, "covers": 2, "collages": [f"out/{name}_20250119T103000Z.jpg"],
                "thumbnail": f"out/thumbs/{name}_20250119T103000Z.jpg", "covers_ok": 2 - partial,
                "covers_failed": int(partial), "covers_cut": 0,
                "failures": [FAILURE] if partial else [], "bytes_downloaded": 90000,
                "download_seconds": 0.2, "render_seconds": 0.05}
    def upload_stream(self, parts, bucket, key, content_type):
        reads = (iter(lambda: part.read(1 << 20), b"") for part in parts)
        self.written[key[key.rindex("."):]] += sum(len(c) for chunks in reads for c in chunks)
        self.pages += key.endswith(".html")
    def head_object(self, *args): return None
    def copy_object(self, *args, **kwargs): pass
    def delete_object(self, *args, **kwargs): pass
    def put_json(self, *args): pass

split = json.loads(sys.argv[2])
run = {"id": "r", "trigger": "s3", "source_bucket": "in", "source_key": "csv-files/c.csv",
       "csv_name": "c", "timestamp": "20250119T103000Z", "output_prefix": "out/",
       "temp_prefix": "runs/r/"}
event = AggregateEvent(run=run, split={"items_key": "runs/r/items.json", **split})
store = LocalStore()
summary = finish_run(event, store, input_bucket="in", output_bucket="out", temp_bucket="temp")
print(json.dumps({"creators": summary.creators.total,
                  "partial": summary.creators.partial,
                  "report_mb": store.written[".json"] / 1e6,
                  "sheet_mb": store.written[".html"] / 1e6, "sheet_pages": store.pages}))
"""


def make_csv(
    path: Path, rows: int, seed: int = 2025, quote_all: bool = False, per_creator: int = 0
) -> None:
    """A month's CSV: random creator order, a bad row every ~40,000 rows; with `quote_all`
    every field of the good rows in quotes, as some exporters write them; with `per_creator`
    exactly that many rows a creator (else ~35, at random)."""
    wrap = '"{}"'.format if quote_all else str
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    creators = []
    for n in range(max(1, rows // (per_creator or COVERS_PER_CREATOR))):
        name = "".join(rnd.choices(letters, k=rnd.randint(6, 14))) + f"_{n}"
        if n % 50 == 0:
            name = f"café_créatrice_{n}"  # non-ASCII names take the NFC check
        creators.append(name)
    bad = [
        ",https://p16-sign-va.tiktokcdn.com/obj/missing-creator.jpeg,2025-01-05T00:00:00Z",
        "someone,not a url,2025-01-05T00:00:00Z",
        "someone,https://p16-sign-va.tiktokcdn.com/obj/bad-date.jpeg,yesterday",
        "too_few_fields",
        '"Smith, Jo",https://p16-sign-va.tiktokcdn.com/obj/quoted.jpeg,2025-01-06T00:00:00Z',
        "",
    ]
    count = len(creators)
    owners = [n % count for n in range(rows)] if per_creator else None
    if owners:
        rnd.shuffle(owners)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("creator_name,cover_url,updated_at\n")
        lines: list[str] = []
        for n in range(rows):
            if n % 40_000 == 39_999:
                lines.append(bad[(n // 40_000) % len(bad)])
            elif n % 50_000 == 49_999 and lines:
                lines.append(lines[-1])  # an exact duplicate
            else:
                stamp = (
                    f"2025-01-{rnd.randint(1, 31):02d}T{rnd.randint(0, 23):02d}:"
                    f"{rnd.randint(0, 59):02d}:{rnd.randint(0, 59):02d}Z"
                )
                url = (
                    f"https://{HOSTS[n % len(HOSTS)]}/obj/tos-maliva-p-0068/"
                    f"{rnd.getrandbits(128):032x}{TAILS[n % len(TAILS)]}"
                )
                if n % 3:  # signed URLs
                    url += f"?x-expires={1_737_000_000 + n}&x-signature={rnd.getrandbits(120):x}"
                owner = owners[n] if owners else rnd.randrange(count)
                fields = (creators[owner], url, stamp)
                lines.append(",".join(map(wrap, fields)))
            if len(lines) >= 20_000:
                out.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            out.write("\n".join(lines) + "\n")


# Appended to each child's code: its own peak RSS. getrusage would count the parent's at fork
# (a pytest process of 900 MB made every child "900 MB"); VmHWM starts afresh at exec.
PEAK = """
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print("peak_kib", line.split()[1])
"""


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a new interpreter; its wall and CPU seconds, peak RSS (MB) and output."""
    started = time.perf_counter()
    command = [sys.executable, "-c", code + PEAK, *args]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output, _, peak = child.stdout.read().rstrip().rpartition("peak_kib ")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"split-bench: child failed with status {child.returncode}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": int(peak) / 1024,
        "output": output.strip(),
    }


def largest_item(items: Path) -> tuple[int, int]:
    """(number of items, bytes of the largest) in the JSON array written by split_csv."""
    count = largest = 0
    with items.open("rb") as source:
        for line in source:  # "[item,\n", "item,\n", ..., "item]\n": one item a line
            item = line.rstrip(b"\n").removeprefix(b"[")
            item = item[:-1] if item.endswith(b"}]") else item.rstrip(b",")
            if item.startswith(b"{"):
                count += 1
                largest = max(largest, len(item))
    return count, largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="CSV rows (2,000,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one round (CI)")
    parser.add_argument("--quote-all", action="store_true", help="every field in quotes")
    parser.add_argument(
        "--covers-per-creator", type=int, default=0, metavar="N",
        help="exactly N rows a creator (2: 1,000,000 creators), and the aggregate step's memory",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rows = 100_000 if args.quick and args.rows == 2_000_000 else args.rows
    rounds = 1 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="split-bench-") as tmp:
        work = Path(tmp)
        csv_path, items, who = work / "covers.csv", work / "items.json", work / "creators.jsonl"
        started = time.perf_counter()
        # The CSV is made in a child too, so this process stays small.
        options = (str(rows), str(int(args.quote_all)), str(args.covers_per_creator))
        run_child(GENERATE, str(Path(__file__).parent), str(csv_path), *options)
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.1f} s")
        base, split = [], []
        for _ in range(rounds):  # interleaved, so drifts of the machine hit both alike
            base.append(run_child(BASELINE, str(csv_path)))
            split.append(run_child(SPLIT, str(csv_path), str(items), tmp, str(who)))
        summary = json.loads(split[-1]["output"])
        if args.covers_per_creator:
            aggregate = run_child(AGGREGATE, str(who), split[-1]["output"])
            print(f"aggregate step: wall {aggregate['wall']:.1f} s, peak RSS "
                  f"{aggregate['rss_mb']:.0f} MB, {aggregate['output']}")  # fmt: skip
            summary["aggregate_rss_mb"] = aggregate["rss_mb"]
        item_count, biggest = largest_item(items)
        size_mb = csv_path.stat().st_size / 1e6
        return report(rows, rounds, size_mb, base, split, summary, item_count, biggest, args)


def report(rows, rounds, size_mb, base, split, summary, item_count, biggest, args) -> int:
    def median(runs: list[dict], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    split_wall = median(split, "wall")
    ratios = sorted(b["wall"] / a["wall"] for a, b in zip(base, split, strict=True))
    ratio = statistics.median(ratios)
    peak = max(run["rss_mb"] for run in split)
    print(f"rows: {rows:,} ({summary['rows']:,} used, {summary['rows_rejected']} rejected, "
          f"{summary['row_warnings']} warnings)")  # fmt: skip
    print(f"creators: {summary['creators']:,} ({item_count:,} items written)")
    print(f"covers: {summary['covers']:,} kept, {summary['covers_cut']:,} cut")
    print(f"file size: {size_mb:.0f} MB")
    print(f"rounds: {rounds} (medians)")
    for label, runs in (("csv.reader baseline", base), ("split_csv", split)):
        print(
            f"{label}: wall {median(runs, 'wall'):.2f} s, cpu {median(runs, 'cpu'):.2f} s, "
            f"peak RSS {max(run['rss_mb'] for run in runs):.0f} MB"
        )
    cpu_ratio = median(split, "cpu") / median(base, "cpu")
    print(
        f"time ratio split/baseline: {ratio:.2f} (rounds {ratios[0]:.2f}-{ratios[-1]:.2f}; "
        f"cpu {cpu_ratio:.2f})"
    )
    print(f"largest item: {biggest:,} bytes")
    if not args.quick and not args.quote_all:  # figures for scripts/cost_model.py
        BENCH_DIR.mkdir(exist_ok=True)
        figures = {"rows": rows, "wall_seconds": round(split_wall, 2), "peak_rss_mb": round(peak)}
        (BENCH_DIR / "split.json").write_text(json.dumps(figures, indent=1) + "\n")
    targets = {
        f"peak RSS <= {RSS_LIMIT_MB} MB": peak <= RSS_LIMIT_MB,
        "largest item < 256 KiB": biggest < ITEM_LIMIT,
    }
    if "aggregate_rss_mb" in summary:
        targets[f"aggregate peak RSS <= {RSS_LIMIT_MB} MB"] = (
            summary["aggregate_rss_mb"] <= RSS_LIMIT_MB
        )
    else:
        targets[f"time ratio <= {RATIO_LIMIT}"] = ratio <= RATIO_LIMIT
    for name, met in targets.items():
        print(f"target {name}: {'MET' if met else 'NOT MET'}")
    missed = [name for name, met in targets.items() if not met]
    if not missed:
        print("split-bench: all targets met")
        return 0
    print(f"split-bench: targets not met: {'; '.join(missed)}")
    return 0 if args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
