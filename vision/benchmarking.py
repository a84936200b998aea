"""The benchmark behind `car bench` and `bench/`: per-frame latency at batch 1 of torch eager vs
onnxruntime fp32 vs onnxruntime INT8, for both architectures, at 1 and 2 threads, measured side by side in
one run.

Runs are interleaved (round-robin over every configuration, `--repeat` rounds), so a slow moment of the
shared machine hits all of them alike; ratios are the median per-frame time of `seed` in torch eager (the
published way to run it) at the same thread count divided by each configuration's. Weights are untrained
(latency does not depend on their values); the INT8 models are calibrated on stand-in frames for the same
reason. The bundles are exported as `car export` does by default (graph order "winograd", INT8 scope
"linear") unless `--graph-order` says otherwise; the report names both. `car bench` (its options:
`car.commands.bench`) and `bench/bench_inference.py` both call `run_benchmark`; `bench/bench_seed_int8.py`
uses its frame timing.

Fairness between configurations: every configuration keeps its warm session, but an idle session does not
go quiet at once. onnxruntime's intra-op workers spin for 2^20 pause loops after their last task
(`session.intra_op.allow_spinning`, on by default, as on the car) and torch's OpenMP workers spin too, so
on a 2-core machine the configuration timed next had its second thread fighting the previous one's
spinning workers. Which configuration suffered depended on the order: `--no-settle` on a quiet machine
timed seed INT8 (run right after seed fp32) at 9.4 ms with 2 threads against 5.0 ms settled, slower than
with 1 thread. Before each configuration's frames the benchmark therefore waits `SETTLE_S` (the spinning
ends, the workers sleep) and runs `REWARM_FRAMES` unmeasured frames (its own workers wake up, caches
refill), then times its frames back to back, as a car's loop runs them. At 1 thread there are no worker
threads and settling changes nothing.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vision.architectures import names

ARCHS = names("gostop")
"""The project's own networks (the registry's "gostop" family); ratios are against seed in torch eager."""
RUNTIMES = ("torch", "fp32", "int8")
RUNTIME_NAMES = {"torch": "torch eager", "fp32": "onnxruntime fp32", "int8": "onnxruntime INT8"}
THREADS = (1, 2)
SETTLE_S = 0.1
"""Pause before each configuration's frames: longer than any idle worker pool spins (a few ms here)."""
REWARM_FRAMES = 2
SEED_INT8_TARGET = 3.0
EDGE_ONNX_TARGET = 10.0


@dataclass(frozen=True, slots=True)
class Latency:
    arch: str
    runtime: str
    threads: int
    median_ms: float
    p90_ms: float
    frames: int
    speedup_vs_seed_torch: float
    cpu_median_ms: float = 0.0
    """Median CPU time the process used per frame (all its threads). At 1 thread it is the frame's own
    compute, which other processes taking turns on the core do not inflate (their cache and memory traffic
    still does); at 2 threads it counts both threads' work, spinning included, so it is no latency."""
    cpu_speedup_vs_seed_torch: float = 0.0


@dataclass(frozen=True, slots=True)
class FrameTime:
    wall_s: float
    cpu_s: float


@dataclass(frozen=True, slots=True)
class FrameStats:
    """One configuration's timed frames, summarised against the reference configuration's."""

    median_ms: float
    p90_ms: float
    cpu_median_ms: float
    speedup: float
    """Reference median wall time / this median wall time."""
    cpu_speedup: float


def frame_stats(times: Sequence[FrameTime], reference: Sequence[FrameTime]) -> FrameStats:
    wall = np.array([t.wall_s for t in times])
    cpu = np.array([t.cpu_s for t in times])
    reference_wall = float(np.median([t.wall_s for t in reference]))
    reference_cpu = float(np.median([t.cpu_s for t in reference]))
    return FrameStats(
        median_ms=float(np.median(wall)) * 1e3,
        p90_ms=float(np.percentile(wall, 90)) * 1e3,
        cpu_median_ms=float(np.median(cpu)) * 1e3,
        speedup=reference_wall / float(np.median(wall)),
        cpu_speedup=reference_cpu / max(float(np.median(cpu)), 1e-9),
    )


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    ratio: float
    goal: float

    @property
    def met(self) -> bool:
        return self.ratio >= self.goal


@dataclass(frozen=True, slots=True)
class BenchReport:
    latencies: tuple[Latency, ...]
    targets: tuple[Target, ...]
    onnx_bytes: dict[str, int]
    graph_order: str = ""
    int8_scope: str = ""
    settled: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            "latency": [asdict(x) for x in self.latencies],
            "targets": [{**asdict(t), "met": t.met} for t in self.targets],
            "onnx_bytes": self.onnx_bytes,
            "graph_order": self.graph_order,
            "int8_scope": self.int8_scope,
            "settled": self.settled,
        }

    def format_table(self) -> str:
        lines = [
            f"{'arch':<6}{'runtime':<18}{'threads':>8}{'median ms':>11}{'p90 ms':>9}{'× seed torch':>14}"
            f"{'cpu ms':>9}{'× (cpu)':>9}",
        ]
        for x in self.latencies:
            lines.append(
                f"{x.arch:<6}{RUNTIME_NAMES[x.runtime]:<18}{x.threads:>8}{x.median_ms:>11.2f}{x.p90_ms:>9.2f}"
                f"{x.speedup_vs_seed_torch:>13.2f}×{x.cpu_median_ms:>9.2f}{x.cpu_speedup_vs_seed_torch:>8.2f}×"
            )
        lines.append("")
        for t in self.targets:
            lines.append(f"{t.name}: {t.ratio:.2f}× (goal ≥ {t.goal:.0f}×) {'met' if t.met else 'NOT met'}")
        sizes = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in self.onnx_bytes.items())
        lines.append(f"ONNX sizes: {sizes}")
        lines.append(f"ONNX graph order {self.graph_order}, INT8 scope {self.int8_scope}")
        if self.settled:
            lines.append(
                f"each configuration timed after a {SETTLE_S:.1f} s settle and {REWARM_FRAMES} warm frames"
            )
        else:
            lines.append("NOT settled: configurations timed back to back (--no-settle)")
        return "\n".join(lines)


Predict = Callable[[np.ndarray], np.ndarray]


def _make_bundles(root: Path, graph_order: str) -> dict[str, Path]:
    import torch

    from vision.export import LabelledFrames, build_bundle, stand_in_frames
    from vision.networks import build_network
    from vision.preprocess import Preprocessing

    prep = Preprocessing()
    calib = LabelledFrames(stand_in_frames(prep, n=16, seed=1).images)
    paths: dict[str, Path] = {}
    for arch in ARCHS:
        torch.manual_seed(0)
        bundle = build_bundle(
            build_network(arch), arch, root / arch, calib, int8=True, graph_order=graph_order
        )
        paths[arch] = bundle.root
    return paths


def _predictors(bundle_paths: dict[str, Path], threads: int) -> dict[tuple[str, str], Predict]:
    from vision.bundle import load_bundle
    from vision.detector import build_detector

    out: dict[tuple[str, str], Predict] = {}
    for arch, path in bundle_paths.items():
        bundle = load_bundle(path)
        for runtime in RUNTIMES:
            out[(arch, runtime)] = build_detector(bundle, runtime, threads).predict
    return out


def _time_frames(predict: Predict, frame: np.ndarray, n: int) -> list[FrameTime]:
    times = []
    for _ in range(n):
        cpu, wall = time.process_time(), time.perf_counter()
        predict(frame)
        times.append(FrameTime(time.perf_counter() - wall, time.process_time() - cpu))
    return times


def settled_frames(predict: Predict, frame: np.ndarray, n: int, settle: bool = True) -> list[FrameTime]:
    """`n` timed frames after other configurations' worker threads went quiet and this one's woke up
    (`settle=False`: straight away, as this benchmark measured before; kept to show the difference)."""
    if settle:
        time.sleep(SETTLE_S)
        _time_frames(predict, frame, REWARM_FRAMES)
    return _time_frames(predict, frame, n)


def run_benchmark(
    repeat: int = 5,
    frames_per_round: int = 10,
    progress: bool = True,
    graph_order: str | None = None,
    settle: bool = True,
) -> BenchReport:
    """Measure every (arch, runtime, threads) configuration, interleaved, and compute the ratios."""
    from vision.export import DEFAULT_GRAPH_ORDER
    from vision.preprocess import Preprocessing, preprocess
    from vision.quantize import DEFAULT_SCOPE

    rng = np.random.default_rng(0)
    frame = preprocess(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), Preprocessing())
    samples: dict[tuple[str, str, int], list[FrameTime]] = {}
    order = graph_order or DEFAULT_GRAPH_ORDER
    with tempfile.TemporaryDirectory(prefix="car-bench-") as tmp:
        bundle_paths = _make_bundles(Path(tmp), order)
        onnx_bytes = {
            f"{arch} {kind}": (bundle_paths[arch] / name).stat().st_size
            for arch in ARCHS
            for kind, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx"))
        }
        for threads in THREADS:
            predictors = _predictors(bundle_paths, threads)
            for predict in predictors.values():  # warm-up outside the measured rounds
                _time_frames(predict, frame, 3)
            for round_no in range(repeat):
                for (arch, runtime), predict in predictors.items():
                    key = (arch, runtime, threads)
                    samples.setdefault(key, []).extend(
                        settled_frames(predict, frame, frames_per_round, settle)
                    )
                if progress:
                    print(f"  threads {threads}: round {round_no + 1}/{repeat}", flush=True)
    latencies = []
    for (arch, runtime, threads), times in samples.items():
        stats = frame_stats(times, samples[("seed", "torch", threads)])
        latencies.append(
            Latency(
                arch=arch,
                runtime=runtime,
                threads=threads,
                median_ms=stats.median_ms,
                p90_ms=stats.p90_ms,
                frames=len(times),
                speedup_vs_seed_torch=stats.speedup,
                cpu_median_ms=stats.cpu_median_ms,
                cpu_speedup_vs_seed_torch=stats.cpu_speedup,
            )
        )
    by_key = {(x.arch, x.runtime, x.threads): x for x in latencies}
    targets = []
    for threads in THREADS:
        targets.append(
            Target(
                f"seed INT8 onnxruntime vs seed torch eager, {threads} thread(s)",
                by_key[("seed", "int8", threads)].speedup_vs_seed_torch,
                SEED_INT8_TARGET,
            )
        )
        targets.append(
            Target(
                f"edge fp32 onnxruntime vs seed torch eager, {threads} thread(s)",
                by_key[("edge", "fp32", threads)].speedup_vs_seed_torch,
                EDGE_ONNX_TARGET,
            )
        )
    return BenchReport(tuple(latencies), tuple(targets), onnx_bytes, order, DEFAULT_SCOPE, settle)
