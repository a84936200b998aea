"""Calibrate a bundle's out-of-distribution signals (`vision.ood`) on frames of the training world.

    python -m vision.ood_calibrate models/edge-sim [--train-seed 3 --n 1500 --drive-seed 10 --drives 60]
                                                  [--holdout-seed 41 --holdout-drive-seed 43]
                                                  [--stop-margin 3 --image-stop-margin 1.5]

Fits each signal on N generated frames of the training dataset's seed plus the frames of scripted drives
(the car driving straight at a can, a mat, a wall: the views the closed loop sees): the features' mean and
(shrunk) inverse covariance, and the image statistics' per group (`vision.ood_image`). Then sets each
signal's limits on held-out frames of other seeds: `slow_from` = their 99th percentile score,
`stop_above` = `stop_margin` (features) or `image_stop_margin` (image statistics) × their largest. Writes
`ood.json` (format 2) into the bundle and adds it to the manifest (role `ood`, with its digest). Renders
with the simulated world; needs no torch.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from vision.bundle import file_entry, load_bundle, with_files, write_manifest
from vision.ood import DEFAULT_TENSORS, OOD_FILE, OOD_ROLE, OodCalibration, OodDetector, OodSuite
from vision.ood_image import fit_image_signal, image_statistics
from vision.ood_signal import fit_gaussian
from vision.preprocess import Preprocessing, fit_to_input, to_network_input
from vision.sim import Placement, World, WorldConfig, sample_scene
from vision.sim.dataset import generate_frame

FrameRows = tuple[np.ndarray, np.ndarray]


def generated_frames(seed: int, n: int) -> list[np.ndarray]:
    config = WorldConfig()
    return [generate_frame(config, seed, i).rgb for i in range(n)]


def drive_frames(seed: int, drives: int, every: int = 6) -> list[np.ndarray]:
    """Frames of straight drives at 0.25 m/s through random drive scenes until the can is 0.3 m away."""
    config = WorldConfig()
    frames = []
    for d in range(drives):
        rng = np.random.default_rng([seed, d])
        world = World(
            config, sample_scene(rng, None, config, Placement(ahead=(1.0, 2.5))), seed=seed * 1000 + d
        )
        for step in range(400):
            rgb, _ = world.render()
            if step % every == 0:
                frames.append(rgb)
            distance = world.can_distance()
            if world.reached_end() or (distance is not None and distance < 0.3):
                break
            world.step(0.25, 1 / 30)
    return frames


def frame_rows(detector: OodDetector, prep: Preprocessing, frames: list[np.ndarray]) -> FrameRows:
    """(feature means N×F, image statistics N×len(STATISTICS)) of the frames, as the car computes them."""
    feats, stats = [], []
    for f in frames:
        x = to_network_input(fit_to_input(f, prep.input_size), prep)
        feats.append(detector.features(x)[1][0])
        stats.append(image_statistics(x[0], prep))
    return np.asarray(feats, dtype=np.float64), np.asarray(stats, dtype=np.float64)


def features(detector: OodDetector, prep: Preprocessing, frames: list[np.ndarray]) -> np.ndarray:
    return frame_rows(detector, prep, frames)[0]


def fit(train: np.ndarray, shrink: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse covariance, the covariance shrunk towards its mean variance (well conditioned)."""
    return fit_gaussian(train, shrink)


def fit_features(train: np.ndarray, held: np.ndarray, stop_margin: float) -> OodCalibration:
    mean, precision = fit(train)
    probe = OodCalibration(DEFAULT_TENSORS, mean, precision, 1.0, 2.0)
    scores = np.array([probe.score(row) for row in held])
    source = (
        f"{len(train)} frames fit, {len(held)} held out: p99 {np.percentile(scores, 99):.2f}, "
        f"max {scores.max():.2f}, stop at {stop_margin} x max"
    )
    return replace(
        probe,
        slow_from=float(np.percentile(scores, 99)),
        stop_above=float(stop_margin * scores.max()),
        source=source,
    )


def calibrate(
    bundle_path: Path,
    *,
    train_seed: int = 3,
    n: int = 1500,
    drive_seed: int = 10,
    drives: int = 60,
    holdout_seed: int = 41,
    holdout_drive_seed: int = 43,
    stop_margin: float = 3.0,
    image_stop_margin: float = 1.5,
) -> OodSuite:
    bundle = load_bundle(bundle_path)
    prep = bundle.manifest.preprocessing
    dim_probe = OodCalibration(DEFAULT_TENSORS, np.zeros(1), np.eye(1), 1.0, 2.0)
    detector = OodDetector(bundle, dim_probe)
    train = frame_rows(detector, prep, generated_frames(train_seed, n) + drive_frames(drive_seed, drives))
    held = frame_rows(
        detector, prep, generated_frames(holdout_seed, n // 3) + drive_frames(holdout_drive_seed, drives // 3)
    )
    where = (
        f"fit: {n} frames of dataset seed {train_seed} + {drives} drives of seed {drive_seed}; limits: "
        f"held-out frames of dataset seed {holdout_seed} + drives seed {holdout_drive_seed}; "
    )
    feature_signal = fit_features(train[0], held[0], stop_margin)
    image_signal = fit_image_signal(train[1], held[1], image_stop_margin)
    suite = OodSuite(
        (
            replace(feature_signal, source=where + feature_signal.source),
            replace(image_signal, source=where + image_signal.source),
        )
    )
    (bundle.root / OOD_FILE).write_text(suite.to_json())
    manifest = with_files(bundle.manifest, **{OOD_ROLE: file_entry(bundle.root, OOD_FILE)})
    write_manifest(bundle.root, manifest)
    return suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vision.ood_calibrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--train-seed", type=int, default=3)
    parser.add_argument("--n", type=int, default=1500)
    parser.add_argument("--drive-seed", type=int, default=10)
    parser.add_argument("--drives", type=int, default=60)
    parser.add_argument("--holdout-seed", type=int, default=41)
    parser.add_argument("--holdout-drive-seed", type=int, default=43)
    parser.add_argument(
        "--stop-margin", type=float, default=3.0, help="features: STOP at this x held-out max"
    )
    parser.add_argument(
        "--image-stop-margin", type=float, default=1.5, help="image statistics: STOP at this x held-out max"
    )
    args = parser.parse_args(argv)
    calibration = calibrate(
        args.bundle,
        train_seed=args.train_seed,
        n=args.n,
        drive_seed=args.drive_seed,
        drives=args.drives,
        holdout_seed=args.holdout_seed,
        holdout_drive_seed=args.holdout_drive_seed,
        stop_margin=args.stop_margin,
        image_stop_margin=args.image_stop_margin,
    )
    for signal in calibration.signals:
        print(
            f"{args.bundle / OOD_FILE} {signal.kind}: slow from {signal.slow_from:.2f}, "
            f"stop above {signal.stop_above:.2f}"
        )
        print(f"  {getattr(signal, 'source', '')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
