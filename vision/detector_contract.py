"""What every detector takes and gives: the batch and output checks and their errors.

Shared by the ONNX detector (`vision.detector`) and the torch twin (`vision.torch_model`), which import it
instead of each other.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from vision.errors import VisionError


class DetectorError(VisionError, RuntimeError):
    """The detector could not give a trustworthy answer for this batch (the car stops)."""


class NonFiniteOutputError(DetectorError):
    """The network answered NaN or inf (the loop logs it as `inference_nan`, not `inference_error`)."""


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a preprocessed batch into (GO, STOP) probabilities."""

    input_size: int

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def check_batch(batch: object, input_size: int) -> np.ndarray:
    """The batch as a C-contiguous float32 N×3×S×S array, or a DetectorError saying what is wrong."""
    if not isinstance(batch, np.ndarray):
        raise DetectorError(f"detector input must be a numpy array, got {type(batch).__name__}")
    if batch.dtype != np.float32:
        raise DetectorError(f"detector input must be float32, got {batch.dtype}; use vision.preprocess")
    expected = (3, input_size, input_size)
    if batch.ndim != 4 or batch.shape[1:] != expected or batch.shape[0] < 1:
        raise DetectorError(
            f"detector input must be N×{expected[0]}×{expected[1]}×{expected[2]}, got {batch.shape}; "
            "use vision.preprocess"
        )
    if not np.isfinite(batch).all():
        raise DetectorError("detector input contains NaN or inf values")
    return np.ascontiguousarray(batch)


def check_probs(probs: np.ndarray, n: int, source: str, k: int = 2) -> np.ndarray:
    """The network's N×K output as float32, or a DetectorError (NaN/inf: NonFiniteOutputError)."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape != (n, k):
        raise DetectorError(f"{source}: network output has shape {probs.shape}, expected ({n}, {k})")
    if not np.isfinite(probs).all():
        raise NonFiniteOutputError(f"{source}: network output is not finite (NaN/inf)")
    return probs
