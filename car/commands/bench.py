"""`car bench [--json] [--repeat N] [--graph-order ORDER]`: per-frame latency at batch 1 of torch eager vs
onnxruntime fp32 vs onnxruntime INT8, for both architectures, at 1 and 2 threads, measured side by side in
one run. The options live here; the benchmark itself is `vision.benchmarking` (which `bench/` imports too,
and whose docstring says how it is made fair).
"""

from __future__ import annotations

import argparse
import json

from vision.benchmarking import run_benchmark


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--frames", type=int, default=10, help="frames per configuration per round")
    parser.add_argument(
        "--graph-order",
        choices=("winograd", "relu-before-pool", "as-trained"),
        default=None,
        help="ONNX graph order of the benchmarked bundles (default: car export's, winograd)",
    )
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="time each configuration straight after the previous one, without letting idle worker "
        "threads stop spinning first (the old, unfair method; only to show the difference)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from vision.errors import VisionError

    if args.repeat < 1 or args.frames < 1:
        raise VisionError("--repeat and --frames must be at least 1")
    order = getattr(args, "graph_order", None)
    settle = not getattr(args, "no_settle", False)
    report = run_benchmark(args.repeat, args.frames, not args.json, order, settle)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_table())
    return 0
