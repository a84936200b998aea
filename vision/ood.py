"""Knowing what it does not know: how unfamiliar a frame looks, computed on the car (no torch).

Two signals (`SIGNAL_KINDS`; what one is: `vision.ood_signal`), each with its own calibrated limits:

- `features` (`OodCalibration`): the Mahalanobis distance of the network's own intermediate features from
  those of the training frames: the spatial means of two feature maps (`OodCalibration.tensors`, by default
  the outputs of the second and third convolution blocks, 32 + 64 numbers), read from the same onnxruntime
  run that gives P(STOP) (the ONNX graph gets ReduceMean outputs in memory; the file is unchanged). It
  recognises other rooms and night light.
- `image` (`vision.ood_image.ImageStatsSignal`): colour, exposure and sharpness statistics of the frame
  itself (numpy, about 0.3 ms). It recognises colour casts, blur and other rooms, which the features miss or
  see less clearly.

The calibration is a bundle file (role `ood`, `ood.json`, format 2: a list of signals; format 1, the
features signal alone, still loads). Above a signal's `slow_from` the car slows (its unfamiliarity rises
linearly from 0 to 1 at its `stop_above`); above any signal's `stop_above` the loop STOPs with the fault
`out_of_distribution`. A frame's unfamiliarity is the largest of the signals'.
`python -m vision.ood_calibrate BUNDLE` makes the file (rendering frames of the simulated world).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from vision.bundle import BundleError, ModelBundle
from vision.detector import Detector, DetectorError, build_detector, check_batch, check_probs
from vision.ood_image import ImageStatsSignal
from vision.ood_signal import OodInput, OodSignal, check_limits, mahalanobis, ramp

OOD_ROLE = "ood"
OOD_FILE = "ood.json"
FORMAT = 2
DEFAULT_TENSORS = ("/features/features.5/MaxPool_output_0", "/features/features.8/MaxPool_output_0")


@dataclass(frozen=True, slots=True)
class OodCalibration:
    """The `features` signal: the training features' mean and inverse covariance, and its limits."""

    kind: ClassVar[str] = "features"
    tensors: tuple[str, ...]
    mean: np.ndarray
    precision: np.ndarray
    slow_from: float
    stop_above: float
    source: str = ""

    def score(self, features: np.ndarray) -> float:
        """Mean squared standardized (Mahalanobis) distance per feature: about 1 on training frames."""
        return mahalanobis(features, self.mean, self.precision)

    def measure(self, frame: OodInput) -> float:
        return self.score(frame.features)

    def unfamiliarity(self, score: float) -> float:
        """0 up to `slow_from`, rising to 1 at `stop_above`."""
        return ramp(score, self.slow_from, self.stop_above)

    def to_doc(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "tensors": list(self.tensors),
            "slow_from": self.slow_from,
            "stop_above": self.stop_above,
            "source": self.source,
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
        }

    def to_json(self) -> str:
        """This signal alone as a format-1 file (what bundles calibrated before the image signal hold)."""
        doc = self.to_doc()
        del doc["kind"]
        return json.dumps({"format": 1, **doc})

    @classmethod
    def from_doc(cls, doc: Mapping[str, object], where: str) -> OodCalibration:
        mean = np.asarray(doc["mean"], dtype=np.float64)
        precision = np.asarray(doc["precision"], dtype=np.float64)
        calibration = cls(
            tuple(str(t) for t in doc["tensors"]),  # type: ignore[attr-defined]
            mean,
            precision,
            float(doc["slow_from"]),  # type: ignore[arg-type]
            float(doc["stop_above"]),  # type: ignore[arg-type]
            str(doc.get("source", "")),
        )
        if precision.shape != (mean.size, mean.size):
            raise BundleError(f"{where}: inconsistent calibration (shapes); calibrate again")
        check_limits(calibration.slow_from, calibration.stop_above, where)
        return calibration

    @classmethod
    def from_json(cls, text: str, where: str) -> OodCalibration:
        """The features signal of a calibration file (format 1 or 2)."""
        suite = OodSuite.from_json(text, where)
        found = [s for s in suite.signals if isinstance(s, OodCalibration)]
        if not found:
            raise BundleError(f"{where}: no features signal in the calibration; calibrate again")
        return found[0]


SIGNAL_KINDS: dict[str, Callable[[Mapping[str, object], str], OodSignal]] = {
    OodCalibration.kind: OodCalibration.from_doc,
    ImageStatsSignal.kind: ImageStatsSignal.from_doc,
}


def _signal_from_doc(doc: Mapping[str, object], where: str) -> OodSignal:
    kind = str(doc.get("kind"))
    if kind not in SIGNAL_KINDS:
        raise BundleError(
            f"{where}: unknown out-of-distribution signal {kind!r} (known: {', '.join(SIGNAL_KINDS)}); "
            "calibrate again"
        )
    return SIGNAL_KINDS[kind](doc, where)


@dataclass(frozen=True, slots=True)
class OodSuite:
    """Every signal of a bundle's calibration (`ood.json`)."""

    signals: tuple[OodSignal, ...]

    @property
    def tensors(self) -> tuple[str, ...]:
        return tuple(t for s in self.signals for t in s.tensors)

    def signal(self, kind: str) -> OodSignal | None:
        return next((s for s in self.signals if s.kind == kind), None)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "signals": [s.to_doc() for s in self.signals]})

    @classmethod
    def from_json(cls, text: str, where: str) -> OodSuite:
        try:
            doc = json.loads(text)
            if doc.get("format") == 1:
                return cls((OodCalibration.from_doc(doc, where),))
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, this version reads 1 and {FORMAT}")
            signals = tuple(_signal_from_doc(d, where) for d in doc["signals"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(
                f"{where}: not an out-of-distribution calibration ({exc}); calibrate again"
            ) from None
        if not signals:
            raise BundleError(f"{where}: the calibration has no signals; calibrate again")
        return cls(signals)


def load_calibration(bundle: ModelBundle) -> OodSuite | None:
    """The bundle's calibration (every signal), or None when it has none."""
    if not bundle.has(OOD_ROLE):
        return None
    path = bundle.path_of(OOD_ROLE)
    return OodSuite.from_json(path.read_text(), str(path))


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


SIGNAL_WORDS = {"features": "feature distance", "image": "image statistics score"}


@dataclass(frozen=True, slots=True)
class OodReading:
    """The most unfamiliar signal's reading of a frame: its score, unfamiliarity (0..1) and STOP limit."""

    score: float
    unfamiliarity: float
    limit: float
    signal: str = "features"

    @property
    def out_of_distribution(self) -> bool:
        return self.score > self.limit

    def detail(self) -> str:
        """The fault's words: which signal, how far, against which limit."""
        what = SIGNAL_WORDS.get(self.signal, f"{self.signal} score")
        return f"{what} {self.score:.2f} above the calibrated limit {self.limit:.2f}"


def _severity(reading: OodReading) -> tuple[bool, float, float]:
    """How bad a reading is: past its limit first, then by unfamiliarity, then by score over limit."""
    return (reading.out_of_distribution, reading.unfamiliarity, reading.score / reading.limit)


def read_signals(signals: Sequence[OodSignal], frame: OodInput) -> OodReading:
    """Every signal's reading of one frame; the one past its limit, else the most unfamiliar one."""
    readings = []
    for signal in signals:
        score = signal.measure(frame)
        readings.append(OodReading(score, signal.unfamiliarity(score), signal.stop_above, signal.kind))
    return max(readings, key=_severity)


class OodDetector:
    """P(STOP) and the frame's features from one onnxruntime run; `last_reading` is the last frame's reading
    (of a batch: the most unfamiliar frame's)."""

    def __init__(self, bundle: ModelBundle, calibration: OodSuite | OodCalibration, threads: int = 1) -> None:
        import onnxruntime as ort

        self.suite = calibration if isinstance(calibration, OodSuite) else OodSuite((calibration,))
        self.prep = bundle.manifest.preprocessing
        self.input_size = self.prep.input_size
        self.model_path = bundle.path_of("onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        graph = feature_graph(self.model_path, self.suite.tensors)
        self.session = ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        self.last_reading: OodReading | None = None
        self.features(np.zeros((1, 3, self.input_size, self.input_size), np.float32))  # warm-up

    def features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities N×2, features N×F) for a preprocessed batch (F = 0 without a features signal)."""
        x = check_batch(batch, self.input_size)
        try:
            probs, *maps = self.session.run(None, {self._input: x})
        except Exception as exc:
            raise DetectorError(f"{self.model_path}: inference failed ({str(exc).splitlines()[0]})") from None
        feats = np.concatenate(maps, axis=1) if maps else np.zeros((x.shape[0], 0), np.float32)
        return check_probs(probs, x.shape[0], str(self.model_path)), feats

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.last_reading = None
        probs, feats = self.features(batch)
        frames = (OodInput(image, row, self.prep) for image, row in zip(batch, feats, strict=True))
        readings = [read_signals(self.suite.signals, frame) for frame in frames]
        self.last_reading = max(readings, key=_severity)
        return probs


def ood_reading(detector: object) -> OodReading | None:
    """The reading of the detector's last prediction, or None (no calibration, or no prediction)."""
    reading = getattr(detector, "last_reading", None)
    return reading if isinstance(reading, OodReading) else None


def parse_signals(text: str) -> tuple[str, ...]:
    """`policy.ood_signals` ("features,image"; the config checks its choices) as signal kinds."""
    return tuple(k.strip() for k in text.split(",") if k.strip())


def build_checked_detector(
    bundle: ModelBundle,
    runtime: str = "fp32",
    threads: int = 1,
    ood: bool = True,
    signals: Sequence[str] | None = None,
) -> Detector:
    """The bundle's detector; with `ood` and a calibrated fp32 bundle, one that also scores unfamiliarity on
    the calibration's `signals` (those it has; None: all of them). Which signals a drive uses by default is
    the config's choice (`policy.ood_signals`), made in one place."""
    calibration = load_calibration(bundle) if ood and runtime == "fp32" else None
    if calibration is not None and signals is not None:
        kept = tuple(s for s in calibration.signals if s.kind in signals)
        calibration = OodSuite(kept) if kept else None
    if calibration is None:
        return build_detector(bundle, runtime, threads)
    return OodDetector(bundle, calibration, threads)
