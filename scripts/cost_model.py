"""Monthly cost of the collage processor for a given volume (`make cost`).

Takes the per-collage CPU time, wall time and memory measured by the benchmarks (`make bench` and
`make bench-split` write them to .bench/*.json; without those files the figures measured on a
2-core machine at the last benchmark run, listed in DEFAULT_MEASURED, are used and said to be), and
prints every input, then the processing cost (Lambda, Step Functions, S3 requests, SQS) with
EXPRESS and STANDARD map children side by side, and storage, transfer and observability
separately. Prices: AWS public list prices, us-east-1, x86_64 and arm64, no free tier.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"

# USD, us-east-1 list prices (aws.amazon.com/lambda/pricing, /step-functions/pricing,
# /s3/pricing, /sqs/pricing, /cloudwatch/pricing).
PRICE = {
    "lambda_gb_s_x86": 0.0000166667,
    "lambda_gb_s_arm": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "sfn_standard_transition": 0.025 / 1000,
    "sfn_express_request": 1.00 / 1e6,
    "sfn_express_gb_s": 0.00001667,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "sqs_request": 0.40 / 1e6,
    "s3_standard_gb_month": 0.023,
    "transfer_out_gb": 0.09,
    "cw_custom_metric_month": 0.30,
    "cw_dashboard_month": 3.00,
    "cw_alarm_month": 0.10,
    "cw_logs_gb": 0.50,
}
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one full vCPU at 1,769 MB, proportionally below
CUSTOM_METRICS = 8  # CollagesCreated, CoversDownloaded, CoversFailed, BytesDownloaded, RenderTime,
# CsvRowsRejected, Creators, RunsFailed (one `service` dimension each)
ALARMS = 3

# Used only when the benchmarks have not written .bench/*.json on this machine: the figures
# `make bench` and `make bench-split` printed on the 2-core development machine (2026-11-24).
DEFAULT_MEASURED = {
    "render": {
        # CPU of a whole `collage render` process (interpreter start and imports included, so
        # more than a warm Lambda spends): one 5x7 collage from 35 1080x1920 JPEG covers.
        "engine_cpu_seconds": 0.388,
        "engine_wall_seconds": 0.272,
        "task_wall_seconds": 0.555,  # build_collage with 100 ms per download, 8 workers
        "peak_rss_mb": 36.1,
        "collage_bytes": 617_644,
    },
    "split": {"rows": 2_000_000, "wall_seconds": 6.35, "peak_rss_mb": 335},
}


@dataclass(frozen=True)
class Volume:
    covers: int
    covers_per_collage: int
    runs: int
    memory_mb: int
    arm64: bool

    @property
    def collages(self) -> int:
        return math.ceil(self.covers / self.covers_per_collage)


def measured() -> tuple[dict, list[str]]:
    figures, sources = {}, []
    for name, default in DEFAULT_MEASURED.items():
        path = BENCH_DIR / f"{name}.json"
        if path.is_file():
            figures[name] = {**default, **json.loads(path.read_text())}
            sources.append(f"{name}: {path.relative_to(ROOT)}")
        else:
            figures[name] = default
            sources.append(
                f"{name}: built-in figures (run `make bench` / `make bench-split` to measure)"
            )
    return figures, sources


def collage_seconds(render: dict, memory_mb: int) -> float:
    """Billed duration of one collage task: network-bound or CPU-bound, whichever is longer,
    plus the S3 writes (~60 ms)."""
    vcpus = min(memory_mb / LAMBDA_MB_PER_VCPU, 2.0)  # decoding uses at most ~2 threads' worth
    cpu_bound = render["engine_cpu_seconds"] / vcpus
    network_bound = render["task_wall_seconds"]
    return max(cpu_bound, network_bound) + 0.06


def processing_costs(volume: Volume, figures: dict) -> dict[str, float]:
    render, split = figures["render"], figures["split"]
    gb_s_price = PRICE["lambda_gb_s_arm" if volume.arm64 else "lambda_gb_s_x86"]
    task_s = collage_seconds(render, volume.memory_mb)
    render_gb_s = volume.collages * task_s * volume.memory_mb / 1024
    split_s = split["wall_seconds"] * volume.covers / split["rows"]
    split_gb_s = split_s * 1.0  # SplitMemorySize 1024 MB
    aggregate_gb_s = volume.collages * 0.002 + volume.runs * 1.0  # 32 parallel result reads
    invocations = volume.collages + 3 * volume.runs
    lambda_cost = (render_gb_s + split_gb_s + aggregate_gb_s) * gb_s_price
    lambda_cost += invocations * PRICE["lambda_request"]
    # Map children: one per creator. EXPRESS bills requests + 64 MB chunks of duration;
    # STANDARD bills every state transition (each child enters its task state and ends: 2).
    express = volume.collages * (
        PRICE["sfn_express_request"] + task_s * 64 / 1024 * PRICE["sfn_express_gb_s"]
    )
    standard_children = volume.collages * 2 * PRICE["sfn_standard_transition"]
    parent = volume.runs * 12 * PRICE["sfn_standard_transition"]
    # S3: per collage a result lookup (GET), the JPEG and the result record (2 PUT), the
    # aggregator's read (GET); per run a handful of item / report / archive requests.
    s3 = volume.collages * (2 * PRICE["s3_put"] + 2 * PRICE["s3_get"])
    s3 += volume.runs * (10 * PRICE["s3_put"] + 10 * PRICE["s3_get"])
    sqs = volume.runs * 3 * PRICE["sqs_request"]
    return {
        "lambda_gb_seconds": render_gb_s + split_gb_s + aggregate_gb_s,
        "collage_task_seconds": task_s,
        "lambda": lambda_cost,
        "step_functions_express": express + parent,
        "step_functions_standard": standard_children + parent,
        "s3_requests": s3,
        "sqs": sqs,
    }


def other_costs(volume: Volume, figures: dict) -> dict[str, float]:
    collage_gb = volume.collages * figures["render"]["collage_bytes"] / 1e9
    logs_gb = volume.collages * 1500 / 1e9  # ~3 JSON lines per task
    return {
        "storage_added_gb": collage_gb,
        "storage_month": collage_gb * PRICE["s3_standard_gb_month"],
        "transfer_out_once": collage_gb * PRICE["transfer_out_gb"],
        "observability": CUSTOM_METRICS * PRICE["cw_custom_metric_month"]
        + PRICE["cw_dashboard_month"]
        + ALARMS * PRICE["cw_alarm_month"]
        + logs_gb * PRICE["cw_logs_gb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--covers", type=int, default=2_000_000, help="covers a month")
    parser.add_argument("--per-collage", type=int, default=35, help="covers per creator")
    parser.add_argument("--runs", type=int, default=30, help="CSVs (runs) a month")
    parser.add_argument("--memory", type=int, default=1024, help="RenderMemorySize (MB)")
    parser.add_argument(
        "--x86", dest="arm64", action="store_false", help="price Lambda on x86_64 (default arm64)"
    )
    parser.add_argument("--target", type=float, default=5.0, help="USD a month for processing")
    args = parser.parse_args(argv)

    figures, sources = measured()
    volume = Volume(args.covers, args.per_collage, args.runs, args.memory, args.arm64)
    costs = processing_costs(volume, figures)
    other = other_costs(volume, figures)

    print("inputs")
    print(
        f"  covers/month {volume.covers:,}, covers/collage {volume.covers_per_collage}, "
        f"collages/month {volume.collages:,}, runs/month {volume.runs}"
    )
    print(f"  render memory {volume.memory_mb} MB, {'arm64' if volume.arm64 else 'x86_64'}")
    for key, value in figures["render"].items():
        print(f"  render.{key} = {value}")
    for key, value in figures["split"].items():
        print(f"  split.{key} = {value}")
    print("  measured figures from: " + "; ".join(sources))
    print(
        f"  billed collage task: {costs['collage_task_seconds']:.2f} s; "
        f"Lambda total {costs['lambda_gb_seconds']:,.0f} GB-s"
    )

    print("\nmonthly processing cost (USD)")
    rows = [
        ("Lambda (GB-s + requests)", costs["lambda"]),
        ("Step Functions, EXPRESS map children", costs["step_functions_express"]),
        ("S3 requests", costs["s3_requests"]),
        ("SQS", costs["sqs"]),
    ]
    for label, value in rows:
        print(f"  {label:<40} {value:8.2f}")
    total = sum(value for _, value in rows)
    with_standard = total - costs["step_functions_express"] + costs["step_functions_standard"]
    print(f"  {'total (EXPRESS children)':<40} {total:8.2f}")
    print(f"  {'total if children were STANDARD':<40} {with_standard:8.2f}")
    print("\nshown separately (USD)")
    print(
        f"  {'S3 storage added this month':<40} {other['storage_month']:8.2f}"
        f"  ({other['storage_added_gb']:.1f} GB of collages, grows monthly)"
    )
    print(f"  {'transfer out, each collage fetched once':<40} {other['transfer_out_once']:8.2f}")
    print(
        f"  {'observability (metrics, dashboard, alarms, logs)':<40} {other['observability']:8.2f}"
    )
    print("\nmemory sizes (collage task): billed seconds and monthly Lambda cost")
    for memory in (512, 768, 1024, 1536, 1769, 2048):
        variant = processing_costs(
            Volume(args.covers, args.per_collage, args.runs, memory, args.arm64), figures
        )
        print(
            f"  {memory:>5} MB  {variant['collage_task_seconds']:5.2f} s  {variant['lambda']:8.2f}"
        )
    verdict = "MET" if total <= args.target else "NOT MET"
    print(f"\ncost-model: processing ${total:.2f}/month vs target ${args.target:.2f}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
