"""Per-frame latency: torch eager vs onnxruntime fp32 vs INT8, seed and edge, 1 and 2 threads (ratios)."""

from __future__ import annotations

from vision.benchmarking import run_benchmark


def run() -> dict[str, object]:
    report = run_benchmark()
    print(report.format_table())
    return report.to_dict()
