"""Normalising a frame for the network: per-level lookup tables against per-pixel arithmetic.

`vision.preprocess.to_network_input` turns a 224×224 RGB uint8 frame into the normalised float32 1×3×224×224
input by looking each pixel up in a 3×256 table; `normalise_arithmetic` is the same result (bit for bit,
tested) computed per pixel, what the loop did before. Both run here in one process, one thread (OpenCV and
the BLAS pools held to one), interleaved repeat by repeat so that load on the machine hits both alike. The
figure is per frame: best of the repeats (the least disturbed) and the median, and their ratio.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vision.preprocess import Preprocessing, normalise_arithmetic, to_network_input  # noqa: E402

FRAMES = 300
REPEATS = 9


def _per_frame_ms(fn: Callable[[np.ndarray], np.ndarray], frames: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for f in frames:
        fn(f)
    return (time.perf_counter() - start) / len(frames) * 1e3


def run() -> dict[str, object]:
    cv2.setNumThreads(1)
    prep = Preprocessing()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for _ in range(FRAMES)]
    cases: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "arithmetic (before)": lambda f: normalise_arithmetic(f, prep),
        "level tables (to_network_input)": lambda f: to_network_input(f, prep),
    }
    for fn in cases.values():  # warm-up: allocations, the table cache
        _per_frame_ms(fn, frames[:20])
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(REPEATS):
        order = list(cases) if r % 2 == 0 else list(reversed(cases))
        for name in order:
            times[name].append(_per_frame_ms(cases[name], frames))
    result: dict[str, object] = {}
    print(f"{'case':34} {'best ms':>8} {'median ms':>10}")
    for name, ts in times.items():
        best, median = min(ts), float(np.median(ts))
        result[name] = {"best_ms": round(best, 4), "median_ms": round(median, 4)}
        print(f"{name:34} {best:8.3f} {median:10.3f}")
    before, after = (times[n] for n in cases)
    speedup = float(np.median(before)) / float(np.median(after))
    result["speedup_median"] = round(speedup, 2)
    print(f"speed-up (median): {speedup:.2f}x; {FRAMES} frames x {REPEATS} repeats, interleaved")
    return result
