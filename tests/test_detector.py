"""The car's detector: warm onnxruntime session, strict input checks, runtime registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_training import coloured_frames
from vision.bundle import BundleError, load_bundle
from vision.detector import (
    RUNTIMES,
    Detector,
    DetectorError,
    OnnxDetector,
    build_detector,
    check_probs,
    stop_decisions,
)
from vision.export import LabelledFrames, build_bundle
from vision.networks import build_network
from vision.preprocess import Preprocessing, to_network_input


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    images, labels = coloured_frames(16, 2)
    root = tmp_path_factory.mktemp("d") / "det"
    return build_bundle(build_network("edge"), "edge", root, LabelledFrames(images, labels), int8=True).root


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return to_network_input(coloured_frames(4, 5)[0], Preprocessing())


def test_registry_has_the_runtimes_and_builds_detectors(bundle_dir: Path, batch: np.ndarray) -> None:
    assert {"fp32", "int8", "torch"} <= set(RUNTIMES)
    bundle = load_bundle(bundle_dir)
    outputs = {}
    for runtime in ("fp32", "int8", "torch"):
        detector = build_detector(bundle, runtime, threads=1)
        assert isinstance(detector, Detector)
        probs = detector.predict(batch)
        assert probs.dtype == np.float32 and probs.shape == (4, 2)
        assert np.all((probs >= 0) & (probs <= 1))
        outputs[runtime] = probs
    assert np.max(np.abs(outputs["fp32"] - outputs["torch"])) <= 1e-5
    with pytest.raises(DetectorError, match="choose one of"):
        build_detector(bundle, "tensorrt")


def test_session_threads_are_fixed(bundle_dir: Path) -> None:
    detector = OnnxDetector(load_bundle(bundle_dir), "fp32", threads=2)
    options = detector.session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    with pytest.raises(DetectorError, match="at least 1"):
        OnnxDetector(load_bundle(bundle_dir), "fp32", threads=0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((1, 3, 224, 224), np.float64), "float32"),
        (np.zeros((1, 224, 224, 3), np.float32), r"N×3×224×224"),
        (np.zeros((3, 224, 224), np.float32), r"N×3×224×224"),
        (np.zeros((0, 3, 224, 224), np.float32), r"N×3×224×224"),
        (np.full((1, 3, 224, 224), np.nan, np.float32), "NaN"),
        ([[0.0]], "numpy array"),
    ],
)
def test_bad_input_is_a_detector_error(bundle_dir: Path, bad: object, message: str) -> None:
    detector = OnnxDetector(load_bundle(bundle_dir))
    with pytest.raises(DetectorError, match=message):
        detector.predict(bad)  # type: ignore[arg-type]


def test_non_finite_output_is_a_detector_error() -> None:
    with pytest.raises(DetectorError, match="not finite"):
        check_probs(np.array([[0.5, np.nan]], np.float32), 1, "m.onnx")
    with pytest.raises(DetectorError, match="shape"):
        check_probs(np.zeros((1, 3), np.float32), 1, "m.onnx")


def test_int8_runtime_needs_an_int8_model(tmp_path: Path) -> None:
    bundle = build_bundle(build_network("edge"), "edge", tmp_path / "fp32only")
    with pytest.raises(BundleError, match="no 'onnx_int8' file"):
        OnnxDetector(bundle, "int8")


def test_stop_decisions_use_the_threshold() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], np.float32)
    np.testing.assert_array_equal(stop_decisions(probs, 0.5), [0, 1, 0])
    np.testing.assert_array_equal(stop_decisions(probs, 0.05), [1, 1, 1])
