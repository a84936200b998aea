"""What every out-of-distribution signal (`vision.ood`) is: a score per frame and two calibrated limits.

A signal turns one frame (`OodInput`: the network input and the network's feature means) into a score that
is small on the training world; `slow_from` and `stop_above` were set on held-out frames of that world.
Unfamiliarity rises linearly from 0 at `slow_from` to 1 at `stop_above`; above `stop_above` the frame is
out of distribution (the loop STOPs). A new signal is one class with `kind`, `score`, `to_doc`, `from_doc`
and one line in `vision.ood.SIGNAL_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from vision.bundle import BundleError
from vision.preprocess import Preprocessing


@dataclass(frozen=True, slots=True)
class OodInput:
    """One frame as the signals see it: its network input (3×S×S, normalized) and its feature means."""

    image: np.ndarray
    features: np.ndarray
    prep: Preprocessing


class OodSignal(Protocol):
    kind: ClassVar[str]

    @property
    def slow_from(self) -> float: ...

    @property
    def stop_above(self) -> float: ...

    @property
    def tensors(self) -> tuple[str, ...]:
        """The ONNX tensors whose spatial means this signal reads (empty: none)."""
        ...

    def measure(self, frame: OodInput) -> float: ...

    def unfamiliarity(self, score: float) -> float: ...

    def to_doc(self) -> dict[str, object]: ...


def ramp(score: float, slow_from: float, stop_above: float) -> float:
    """0 up to `slow_from`, rising to 1 at `stop_above`."""
    return float(min(max((score - slow_from) / (stop_above - slow_from), 0.0), 1.0))


def check_limits(slow_from: float, stop_above: float, where: str) -> None:
    if not 0 < slow_from < stop_above:
        raise BundleError(
            f"{where}: inconsistent calibration (limits {slow_from} and {stop_above}); calibrate again"
        )


def mahalanobis(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> float:
    """Mean squared standardized distance per dimension: about 1 on the frames the fit saw."""
    z = np.asarray(x, dtype=np.float64).reshape(-1) - mean
    return float(z @ precision @ z) / z.size


def fit_gaussian(rows: np.ndarray, shrink: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse covariance, the covariance shrunk towards its mean variance (well conditioned)."""
    mean = rows.mean(axis=0)
    cov = np.atleast_2d(np.cov(rows - mean, rowvar=False))
    dim = cov.shape[0]
    cov += shrink * np.trace(cov) / dim * np.eye(dim)
    return mean, np.linalg.inv(cov)


def float_matrix(doc: Mapping[str, object], key: str) -> np.ndarray:
    return np.asarray(doc[key], dtype=np.float64)
