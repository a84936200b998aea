"""Static INT8 quantisation (QDQ) of a bundle's ONNX network, calibrated on real frames. No torch here.

The final Sigmoid stays in float: its input is dequantised first, so the probabilities the policy
thresholds keep their full resolution near 0 and 1.

Which operators become INT8 is a named scope (`QUANT_SCOPES`). The default, "linear", quantises the fully
connected layers only: they are memory-bound (the seed network's first Linear is 100 MB in float, 25 MB in
INT8). "all" quantises the convolutions too, for CPUs with int8 dot-product instructions (VNNI, ARM
dotprod). Measured on this project's bench machine (AMD EPYC, AVX2 without VNNI, 1 thread, seed network,
the exported graph in ReLU-before-MaxPool order so each ReLU folds into its convolution): onnxruntime's
QLinearConv runs no faster than its float NCHWc convolution (2.8 vs 2.7 ms for conv2 and conv3, 2.8 vs
1.4 ms for the 3-channel first conv), so "all" costs 11.7 ms per frame against 9.6 ms for "linear";
quantising only the later convolutions is slower still (the Quantize/Transpose nodes between the float and
INT8 parts cost more than nothing saved). This Zen-1 core multiplies int8 no faster than float (one
128-bit integer multiply pipe against two float FMA pipes), so the convolutions are made cheaper by doing
fewer multiplications instead (Winograd, `vision.winograd`).

Nodes an exporter marks as float-only (ONNX metadata `gostop.float_nodes`: node-name prefixes; the
Winograd stages' transforms and products) are never quantised: their matrices are fixed transforms, not
trained weights, and their values are not in a range that INT8 keeps. Measured alternatives for the
100 MB Linear on the bench machine, all within 0.3 ms of each other (~2.1 ms, bound by reading its 25 MB of
INT8 weights: ~11-12 GB/s on one core): QDQ → QGemm per-channel or per-tensor, QLinearMatMul, dynamic
quantisation (DynamicQuantizeMatMul); U8U8 and MatMulNBits (8-bit blocks) are slower.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vision.errors import VisionError


class QuantizeError(VisionError, RuntimeError):
    """INT8 quantisation failed; the message says why and what to do."""


class FrameCalibrationReader:
    """Feeds preprocessed frames (float32 N×3×S×S) to onnxruntime's calibrator, a few at a time."""

    def __init__(self, input_name: str, frames: np.ndarray, batch: int = 8) -> None:
        self._input_name = input_name
        self._batches = [frames[i : i + batch] for i in range(0, len(frames), batch)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        batch = np.ascontiguousarray(self._batches[self._next], dtype=np.float32)
        self._next += 1
        return {self._input_name: batch}

    def rewind(self) -> None:
        self._next = 0


FLOAT_NODES_KEY = "gostop.float_nodes"
"""ONNX metadata key: node-name prefixes (separated by ";") of nodes that must stay float."""


def float_output_nodes(model_path: Path) -> list[str]:
    """Names of the nodes kept in float: the output Sigmoid(s) or Softmax (the manifest's output kind)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return [node.name for node in model.graph.node if node.op_type in OUTPUT_OPS]


OUTPUT_OPS = ("Sigmoid", "Softmax")


def marked_float_nodes(model_path: Path) -> list[str]:
    """Names of the nodes under the float-only prefixes the exporter recorded (`FLOAT_NODES_KEY`)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    recorded = next((p.value for p in model.metadata_props if p.key == FLOAT_NODES_KEY), "")
    prefixes = tuple(prefix for prefix in recorded.split(";") if prefix)
    if not prefixes:
        return []
    return [node.name for node in model.graph.node if node.name.startswith(prefixes)]


QUANT_SCOPES: dict[str, tuple[str, ...] | None] = {
    "linear": ("Gemm", "MatMul"),
    "all": None,  # every operator onnxruntime can quantise
}
DEFAULT_SCOPE = "linear"


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    frames: np.ndarray,
    scope: str = DEFAULT_SCOPE,
    per_channel: bool = True,
) -> Path:
    """Write a QDQ INT8 copy of `fp32_path` calibrated on `frames` (MinMax); the Sigmoid and the nodes
    marked float-only (`marked_float_nodes`) stay float."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if scope not in QUANT_SCOPES:
        raise QuantizeError(f"INT8 scope {scope!r}: choose one of {sorted(QUANT_SCOPES)}")
    op_types = QUANT_SCOPES[scope]
    if frames.ndim != 4 or frames.dtype != np.float32 or len(frames) == 0:
        raise QuantizeError(f"calibration frames must be float32 N×3×S×S with N ≥ 1, got {frames.shape}")
    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    del session
    outputs = float_output_nodes(fp32_path)
    if not outputs:
        raise QuantizeError(f"{fp32_path}: no Sigmoid/Softmax output node found; re-export the network")
    keep_float = outputs + marked_float_nodes(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            FrameCalibrationReader(input_name, frames),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float,
            op_types_to_quantize=None if op_types is None else list(op_types),
        )
    return out_path
