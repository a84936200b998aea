"""The GO/STOP detector the car runs: a bundle's ONNX network in a warm onnxruntime session. No torch here.

`predict` takes a preprocessed float32 N×3×S×S batch (see `vision.preprocess`) and returns float32 N×2
probabilities (GO, STOP). Anything wrong (shape, dtype, non-finite input or output) raises `DetectorError`,
which the control loop turns into STOP.

A network's own outputs are one probability per manifest label (`label_probs`: N×K, softmax or sigmoid);
`GoStop` turns them into the (GO, STOP) pair everything downstream reads. This is the one place P(STOP) is
picked out of a network's outputs: P(STOP) is the stop label's output; P(GO) is the other label's output
when there are two labels (so this project's (GO, STOP) networks pass through unchanged), else 1 − P(STOP).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vision.bundle import BundleManifest, ModelBundle
from vision.detector_contract import (
    Detector,
    DetectorError,
    NonFiniteOutputError,
    check_batch,
    check_probs,
)

__all__ = [
    "RUNTIMES",
    "Detector",
    "DetectorError",
    "NonFiniteOutputError",
    "OnnxDetector",
    "build_detector",
    "check_batch",
    "check_probs",
    "register_runtime",
    "stop_decisions",
]


DetectorFactory = Callable[[ModelBundle, int], Detector]
RUNTIMES: dict[str, DetectorFactory] = {}


def register_runtime(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    def deco(factory: DetectorFactory) -> DetectorFactory:
        RUNTIMES[name] = factory
        return factory

    return deco


@dataclass(frozen=True, slots=True)
class GoStop:
    """Turns one probability per label into (GO, STOP) probabilities (see the module docstring)."""

    n_labels: int
    stop_index: int

    @classmethod
    def of(cls, manifest: BundleManifest) -> GoStop:
        return cls(len(manifest.labels), manifest.stop_index)

    def __call__(self, label_probs: np.ndarray) -> np.ndarray:
        if self.n_labels == 2 and self.stop_index == 1:
            return label_probs  # (GO, STOP) already, or a two-label network with STOP second
        stop = label_probs[:, self.stop_index]
        go = label_probs[:, 1 - self.stop_index] if self.n_labels == 2 else 1.0 - stop
        return np.ascontiguousarray(np.stack([go, stop], axis=1), dtype=np.float32)


def stop_decisions(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Labels (0 GO, 1 STOP) from N×2 probabilities: STOP where P(STOP) > threshold (the manifest's)."""
    return (np.asarray(probs)[:, 1] > threshold).astype(np.int64)


ONNX_ROLES = {"fp32": "onnx", "int8": "onnx_int8"}


class OnnxDetector:
    """A warm onnxruntime session: fixed intra-op threads, one inter-op thread, sequential execution."""

    def __init__(self, bundle: ModelBundle, runtime: str = "fp32", threads: int = 1) -> None:
        import onnxruntime as ort

        if runtime not in ONNX_ROLES:
            raise DetectorError(f"runtime={runtime!r}: choose one of {sorted(ONNX_ROLES)}")
        if threads < 1:
            raise DetectorError(f"threads={threads}: must be at least 1")
        self.bundle = bundle
        self.runtime = runtime
        self.threads = threads
        self.input_size = bundle.manifest.preprocessing.input_size
        self.model_path = bundle.path_of(ONNX_ROLES[runtime])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(
                f"{self.model_path}: onnxruntime cannot load it ({str(exc).splitlines()[0]}); re-export"
            ) from None
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise DetectorError(f"{self.model_path}: expected one input and one output; re-export the bundle")
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        self.n_labels = len(bundle.manifest.labels)
        self.go_stop = GoStop.of(bundle.manifest)
        out_shape = list(outputs[0].shape)
        if len(out_shape) != 2 or out_shape[1] != self.n_labels:
            raise DetectorError(
                f"{self.model_path}: network output shape {out_shape} does not match the manifest's "
                f"{self.n_labels} labels; fix the manifest's labels or re-export the bundle"
            )
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1:] != [3, self.input_size, self.input_size]:
            raise DetectorError(
                f"{self.model_path}: network input shape {shape} does not match the manifest's "
                f"{self.input_size}×{self.input_size} RGB input; re-export the bundle"
            )
        self.predict(np.zeros((1, 3, self.input_size, self.input_size), np.float32))  # warm-up

    def label_probs(self, batch: np.ndarray) -> np.ndarray:
        """N×K: one probability per manifest label, as the network computed them."""
        x = check_batch(batch, self.input_size)
        try:
            (out,) = self.session.run([self._output_name], {self._input_name: x})
        except Exception as exc:
            raise DetectorError(f"{self.model_path}: inference failed ({str(exc).splitlines()[0]})") from None
        return check_probs(out, x.shape[0], str(self.model_path), self.n_labels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.go_stop(self.label_probs(batch))


@register_runtime("fp32")
def _onnx_fp32(bundle: ModelBundle, threads: int) -> Detector:
    return OnnxDetector(bundle, "fp32", threads)


@register_runtime("int8")
def _onnx_int8(bundle: ModelBundle, threads: int) -> Detector:
    return OnnxDetector(bundle, "int8", threads)


@register_runtime("torch")
def _torch(bundle: ModelBundle, threads: int) -> Detector:
    """The torch twin (desktop only: imports torch lazily, never used by `car drive`)."""
    from vision.torch_model import TorchDetector

    return TorchDetector(bundle, threads=threads)


def build_detector(bundle: ModelBundle, runtime: str = "fp32", threads: int = 1) -> Detector:
    """A detector for one of the registered runtimes ("fp32", "int8", "torch")."""
    try:
        factory = RUNTIMES[runtime]
    except KeyError:
        raise DetectorError(f"runtime={runtime!r}: choose one of {sorted(RUNTIMES)}") from None
    return factory(bundle, threads)
