"""Knowing what it does not know: how unfamiliar a frame looks to the network, computed on the car.

The signal is the Mahalanobis distance of the network's own intermediate features from those of the
training frames: the spatial means of two feature maps (`OodCalibration.tensors`, by default the outputs of
the second and third convolution blocks, 32 + 64 numbers), read from the same onnxruntime run that gives
P(STOP) (the ONNX graph gets ReduceMean outputs in memory; the file is unchanged, no torch is needed).
Measured (see README, "Knowing what it does not know") against the penultimate layer, the flattened last
features and image colour/sharpness statistics, these separated unfamiliar worlds best.

The calibration is a bundle file (role `ood`, `ood.json`): the training features' mean and inverse
covariance, and two limits on the score (mean squared standardized distance per feature) set on held-out
frames of the training world: above `slow_from` the car slows (unfamiliarity rises linearly from 0 to 1
at `stop_above`), above `stop_above` the loop STOPs with the fault `out_of_distribution`.
`python -m vision.ood calibrate BUNDLE` makes it (rendering frames of the simulated world).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.bundle import BundleError, ModelBundle
from vision.detector import Detector, DetectorError, build_detector, check_batch, check_probs

OOD_ROLE = "ood"
OOD_FILE = "ood.json"
DEFAULT_TENSORS = ("/features/features.5/MaxPool_output_0", "/features/features.8/MaxPool_output_0")


@dataclass(frozen=True, slots=True)
class OodCalibration:
    tensors: tuple[str, ...]
    mean: np.ndarray
    precision: np.ndarray
    slow_from: float
    stop_above: float
    source: str = ""

    def score(self, features: np.ndarray) -> float:
        """Mean squared standardized (Mahalanobis) distance per feature: about 1 on training frames."""
        z = np.asarray(features, dtype=np.float64).reshape(-1) - self.mean
        return float(z @ self.precision @ z) / z.size

    def unfamiliarity(self, score: float) -> float:
        """0 up to `slow_from`, rising to 1 at `stop_above`."""
        return float(min(max((score - self.slow_from) / (self.stop_above - self.slow_from), 0.0), 1.0))

    def to_json(self) -> str:
        doc = {
            "format": 1,
            "tensors": list(self.tensors),
            "slow_from": self.slow_from,
            "stop_above": self.stop_above,
            "source": self.source,
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
        }
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str, where: str) -> OodCalibration:
        try:
            doc = json.loads(text)
            mean = np.asarray(doc["mean"], dtype=np.float64)
            precision = np.asarray(doc["precision"], dtype=np.float64)
            calibration = cls(
                tuple(doc["tensors"]),
                mean,
                precision,
                float(doc["slow_from"]),
                float(doc["stop_above"]),
                str(doc.get("source", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(
                f"{where}: not an out-of-distribution calibration ({exc}); calibrate again"
            ) from None
        if (
            precision.shape != (mean.size, mean.size)
            or not 0 < calibration.slow_from < calibration.stop_above
        ):
            raise BundleError(f"{where}: inconsistent calibration (shapes or limits); calibrate again")
        return calibration


def load_calibration(bundle: ModelBundle) -> OodCalibration | None:
    """The bundle's calibration, or None when it has none."""
    if not bundle.has(OOD_ROLE):
        return None
    path = bundle.path_of(OOD_ROLE)
    return OodCalibration.from_json(path.read_text(), str(path))


def feature_graph(onnx_path: Path, tensors: Sequence[str]) -> bytes:
    """The network with one extra output per tensor: its spatial mean (N×C), serialized."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(onnx_path))
    known = {out for node in model.graph.node for out in node.output}
    for i, name in enumerate(tensors):
        if name not in known:
            raise BundleError(
                f"{onnx_path}: no tensor {name!r} for the out-of-distribution features; calibrate again"
            )
        model.graph.node.append(helper.make_node("ReduceMean", [name], [f"ood_{i}"], axes=[2, 3], keepdims=0))
        model.graph.output.append(helper.make_tensor_value_info(f"ood_{i}", TensorProto.FLOAT, None))
    return bytes(model.SerializeToString())


@dataclass(frozen=True, slots=True)
class OodReading:
    score: float
    unfamiliarity: float
    limit: float

    @property
    def out_of_distribution(self) -> bool:
        return self.score > self.limit


class OodDetector:
    """P(STOP) and the frame's features from one onnxruntime run; `last_reading` is the last frame's score."""

    def __init__(self, bundle: ModelBundle, calibration: OodCalibration, threads: int = 1) -> None:
        import onnxruntime as ort

        self.calibration = calibration
        self.input_size = bundle.manifest.preprocessing.input_size
        self.model_path = bundle.path_of("onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        graph = feature_graph(self.model_path, calibration.tensors)
        self.session = ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.last_reading: OodReading | None = None
        self.features(np.zeros((1, 3, self.input_size, self.input_size), np.float32))  # warm-up

    def features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities N×2, features N×F) for a preprocessed batch."""
        x = check_batch(batch, self.input_size)
        try:
            probs, *maps = self.session.run(None, {self._input: x})
        except Exception as exc:
            raise DetectorError(f"{self.model_path}: inference failed ({str(exc).splitlines()[0]})") from None
        return check_probs(probs, x.shape[0], str(self.model_path)), np.concatenate(maps, axis=1)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.last_reading = None
        probs, feats = self.features(batch)
        c = self.calibration
        score = max(c.score(row) for row in feats)
        self.last_reading = OodReading(score, c.unfamiliarity(score), c.stop_above)
        return probs


def ood_reading(detector: object) -> OodReading | None:
    """The reading of the detector's last prediction, or None (no calibration, or no prediction)."""
    reading = getattr(detector, "last_reading", None)
    return reading if isinstance(reading, OodReading) else None


def build_checked_detector(
    bundle: ModelBundle, runtime: str = "fp32", threads: int = 1, ood: bool = True
) -> Detector:
    """The bundle's detector; with `ood` and a calibrated fp32 bundle, one that also scores unfamiliarity."""
    calibration = load_calibration(bundle) if ood and runtime == "fp32" else None
    if calibration is None:
        return build_detector(bundle, runtime, threads)
    return OodDetector(bundle, calibration, threads)
