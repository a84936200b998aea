"""Measure a bundle's out-of-distribution signals on new frames: normal, other rooms, and transformed copies.

    python -m vision.ood_measure models/edge-sim --seed 7044 --shifted-seed 7045 --n 300

Renders N frames of the training world (dataset `--seed`) and N of the shifted world (`--shifted-seed`),
makes night (×0.3, ×0.5), colour-cast (R ×1.4, B ×0.6), fisheye (k1 −0.25) and 9×9 box-blur copies of the
normal ones, and prints per signal and for both together: the AUROC of "unlike" against "normal" (0.5 = no
signal) and the share of frames above the slow-down point and above the STOP limit. Also times the image
statistics per frame. Use seeds that no calibration used (calibration: 3, 10, 41, 43).
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from vision.bundle import load_bundle
from vision.ood import OodDetector, OodSuite, load_calibration
from vision.ood_image import image_statistics
from vision.ood_signal import OodInput
from vision.preprocess import Preprocessing, fit_to_input, to_network_input
from vision.sim import WorldConfig
from vision.sim.dataset import generate_frame
from vision.sim.perturb import Fisheye

Transform = Callable[[np.ndarray], np.ndarray]


def _gain(gains: tuple[float, float, float]) -> Transform:
    g = np.asarray(gains, dtype=np.float32)
    return lambda rgb: np.clip(rgb.astype(np.float32) * g, 0, 255).astype(np.uint8)


def _fisheye(k1: float) -> Transform:
    lens = Fisheye(np.random.default_rng(0))
    lens.k1 = k1
    return lambda rgb: lens.image(rgb, np.random.default_rng(0))


TRANSFORMS: dict[str, Transform] = {
    "night ×0.3": _gain((0.3, 0.3, 0.3)),
    "night ×0.5": _gain((0.5, 0.5, 0.5)),
    "colour cast (1.4, 1, 0.6)": _gain((1.4, 1.0, 0.6)),
    "fisheye k1 −0.25": _fisheye(-0.25),
    "9×9 blur": lambda rgb: cv2.blur(rgb, (9, 9)),
}


def auroc(normal: np.ndarray, unlike: np.ndarray) -> float:
    """P(an unlike frame scores above a normal one), ties counted half."""
    a = np.sort(normal)
    below = np.searchsorted(a, unlike, side="left")
    above_or_equal = np.searchsorted(a, unlike, side="right")
    return float((below + (above_or_equal - below) / 2).mean() / a.size)


def scores(detector: OodDetector, prep: Preprocessing, frames: list[np.ndarray]) -> np.ndarray:
    """N×S: each frame's score by each signal of the calibration (in its order)."""
    out = []
    for rgb in frames:
        x = to_network_input(fit_to_input(rgb, prep.input_size), prep)
        frame = OodInput(x[0], detector.features(x)[1][0], prep)
        out.append([s.measure(frame) for s in detector.suite.signals])
    return np.asarray(out, dtype=np.float64)


def columns(suite: OodSuite, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per signal and combined: (a score to rank by, above the slow-down point, above the STOP limit).
    Combined ranks by the largest score in units of its signal's slow-down point, as the car combines."""
    slow = np.array([s.slow_from for s in suite.signals])
    stop = np.array([s.stop_above for s in suite.signals])
    out = {s.kind: (x[:, i], x[:, i] > slow[i], x[:, i] > stop[i]) for i, s in enumerate(suite.signals)}
    out["combined"] = ((x / slow).max(axis=1), (x > slow).any(axis=1), (x > stop).any(axis=1))
    return out


def report(suite: OodSuite, sets: dict[str, np.ndarray]) -> list[str]:
    """One markdown table per signal and one for both: AUROC against normal, share above each limit."""
    per_set = {name: columns(suite, x) for name, x in sets.items()}
    lines = []
    for signal in per_set["normal"]:
        lines += [
            f"\n{signal}:",
            "| frames | AUROC | above slow-down | above STOP |",
            "| --- | --- | --- | --- |",
        ]
        normal = per_set["normal"][signal][0]
        for name, cols in per_set.items():
            rank, slow, stop = cols[signal]
            lines.append(f"| {name} | {auroc(normal, rank):.2f} | {slow.mean():.0%} | {stop.mean():.0%} |")
    return lines


def stats_cost_ms(prep: Preprocessing, frame: np.ndarray) -> float:
    """Per-frame time of the image statistics: the best of 15 repeats of 50 calls (load only slows it)."""
    x = to_network_input(fit_to_input(frame, prep.input_size), prep)[0]
    return min(timeit.repeat(lambda: image_statistics(x, prep), number=50, repeat=15)) / 50 * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vision.ood_measure", description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--seed", type=int, default=7044)
    parser.add_argument("--shifted-seed", type=int, default=7045)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args(argv)
    bundle = load_bundle(args.bundle)
    suite = load_calibration(bundle)
    if suite is None:
        parser.error(f"{args.bundle}: no ood.json; run python -m vision.ood_calibrate {args.bundle} first")
    prep = bundle.manifest.preprocessing
    detector = OodDetector(bundle, suite)
    normal = [generate_frame(WorldConfig(), args.seed, i).rgb for i in range(args.n)]
    shifted = [generate_frame(WorldConfig(domain="shifted"), args.shifted_seed, i).rgb for i in range(args.n)]
    sets = {"normal": scores(detector, prep, normal), "shifted world": scores(detector, prep, shifted)}
    for name, transform in TRANSFORMS.items():
        sets[name] = scores(detector, prep, [transform(f) for f in normal])
    print(f"{args.bundle}: {args.n} frames each, seed {args.seed}, shifted world seed {args.shifted_seed}")
    print("\n".join(report(suite, sets)))
    print(f"\nimage statistics: {stats_cost_ms(prep, normal[0]):.3f} ms per frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
