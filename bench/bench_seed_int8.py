"""Where `seed`'s INT8 time goes: the export variants tried for issue #3, side by side with torch eager.

Each variant is a real bundle exported by `vision.export.build_bundle` (untrained weights, INT8 calibrated
on stand-in frames: latency does not depend on the values). Configurations are interleaved round by round
and settled as in `car bench` (idle worker pools stop spinning before each configuration's frames); the
ratio is torch eager's median per-frame time at the same thread count divided by the variant's.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vision.benchmarking import THREADS, FrameTime, Predict, frame_stats, settled_frames

REPEAT = 6
FRAMES_PER_ROUND = 10


@dataclass(frozen=True, slots=True)
class SeedVariant:
    """One way to run `seed`: a runtime ("torch", "fp32", "int8") of a bundle exported one way."""

    name: str
    runtime: str
    graph_order: str
    int8_scope: str = "linear"


VARIANTS = (
    SeedVariant("torch eager (published)", "torch", "winograd"),
    SeedVariant("ORT fp32, relu-before-pool", "fp32", "relu-before-pool"),
    SeedVariant("ORT fp32, winograd", "fp32", "winograd"),
    SeedVariant("ORT INT8 linear, relu-before-pool", "int8", "relu-before-pool"),
    SeedVariant("ORT INT8 linear, winograd", "int8", "winograd"),
    SeedVariant("ORT INT8 all, relu-before-pool", "int8", "relu-before-pool", "all"),
)


@dataclass(frozen=True, slots=True)
class VariantLatency:
    name: str
    threads: int
    median_ms: float
    p90_ms: float
    speedup_vs_torch: float
    cpu_median_ms: float
    cpu_speedup_vs_torch: float


def _bundles(root: Path) -> dict[tuple[str, str], Path]:
    import torch

    from vision.export import LabelledFrames, build_bundle, stand_in_frames
    from vision.networks import build_network
    from vision.preprocess import Preprocessing

    calib = LabelledFrames(stand_in_frames(Preprocessing(), n=16, seed=1).images)
    paths: dict[tuple[str, str], Path] = {}
    for key in sorted({(v.graph_order, v.int8_scope) for v in VARIANTS}):
        torch.manual_seed(0)
        order, scope = key
        out = root / f"{order}-{scope}"
        paths[key] = build_bundle(
            build_network("seed"), "seed", out, calib, int8=True, graph_order=order, int8_scope=scope
        ).root
    return paths


def measure(repeat: int = REPEAT, frames_per_round: int = FRAMES_PER_ROUND) -> list[VariantLatency]:
    from vision.bundle import load_bundle
    from vision.detector import build_detector
    from vision.preprocess import Preprocessing, preprocess

    frame = preprocess(
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8), Preprocessing()
    )
    results: list[VariantLatency] = []
    with tempfile.TemporaryDirectory(prefix="bench-seed-int8-") as tmp:
        paths = _bundles(Path(tmp))
        for threads in THREADS:
            predictors: dict[str, Predict] = {
                v.name: build_detector(
                    load_bundle(paths[(v.graph_order, v.int8_scope)]), v.runtime, threads
                ).predict
                for v in VARIANTS
            }
            samples: dict[str, list[FrameTime]] = {name: [] for name in predictors}
            for round_no in range(repeat):
                for name, predict in predictors.items():
                    samples[name] += settled_frames(predict, frame, frames_per_round)
                print(f"  threads {threads}: round {round_no + 1}/{repeat}", flush=True)
            reference = samples[VARIANTS[0].name]
            for name, times in samples.items():
                results.append(_latency(name, threads, times, reference))
    return results


def _latency(name: str, threads: int, times: list[FrameTime], reference: list[FrameTime]) -> VariantLatency:
    stats = frame_stats(times, reference)
    return VariantLatency(
        name=name,
        threads=threads,
        median_ms=stats.median_ms,
        p90_ms=stats.p90_ms,
        speedup_vs_torch=stats.speedup,
        cpu_median_ms=stats.cpu_median_ms,
        cpu_speedup_vs_torch=stats.cpu_speedup,
    )


def format_table(results: list[VariantLatency]) -> str:
    header = f"{'seed variant':<36}{'threads':>8}{'median ms':>11}{'p90 ms':>9}{'× torch':>9}"
    lines = [header + f"{'cpu ms':>9}{'× (cpu)':>9}"]
    for r in results:
        lines.append(
            f"{r.name:<36}{r.threads:>8}{r.median_ms:>11.2f}{r.p90_ms:>9.2f}{r.speedup_vs_torch:>8.2f}×"
            f"{r.cpu_median_ms:>9.2f}{r.cpu_speedup_vs_torch:>8.2f}×"
        )
    return "\n".join(lines)


def run() -> dict[str, object]:
    results = measure()
    print(format_table(results))
    return {"variants": [asdict(r) for r in results]}
