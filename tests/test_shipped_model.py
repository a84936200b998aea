"""The shipped bundle (models/edge-sim): loads, verifies, and meets the accuracy goal on fresh frames.

The frames are rendered in memory by the simulated world with a seed no training set used (training used
seed 1, the README's held-out set seed 2), hard negatives included in the default scene mix.
"""

from __future__ import annotations

import numpy as np
import pytest

from vision.bundle import DEFAULT_BUNDLE, load_bundle

FRESH_SEED = 20261123
N_FRAMES = 300


@pytest.fixture(scope="module")
def fresh_frames() -> tuple[np.ndarray, np.ndarray]:
    from vision.preprocess import fit_to_input
    from vision.sim.config import WorldConfig
    from vision.sim.dataset import generate_frame

    config = WorldConfig()
    frames = [generate_frame(config, FRESH_SEED, i) for i in range(N_FRAMES)]
    images = np.stack([fit_to_input(f.rgb) for f in frames])
    labels = np.array([f.truth.label for f in frames], dtype=np.int64)
    return images, labels


def test_shipped_bundle_loads_and_is_the_small_edge_network() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    m = bundle.manifest
    assert m.arch == "edge" and m.preprocessing.channel_order == "RGB"
    assert m.files["onnx"].bytes <= 2 * 1024 * 1024
    assert bundle.has("onnx_int8")
    assert m.data.n_total >= 1000 and m.data.command.startswith("car train")
    assert m.metrics.onnx_parity_max_abs is not None and m.metrics.onnx_parity_max_abs <= 1e-5


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_shipped_bundle_meets_the_accuracy_goal_on_fresh_frames(
    fresh_frames: tuple[np.ndarray, np.ndarray], runtime: str
) -> None:
    from car.commands.evaluate import baseline_report, predict_labels
    from vision.metrics import classification_report

    images, labels = fresh_frames
    assert 0.2 < labels.mean() < 0.8  # both classes present in a realistic mix
    report = classification_report(labels, predict_labels(load_bundle(DEFAULT_BUNDLE), images, runtime))
    assert report.accuracy >= 0.97, report.format_table()
    assert baseline_report(images, labels).accuracy <= 0.85
