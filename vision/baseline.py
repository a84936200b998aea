"""The published intensity-threshold baseline, exactly: greyscale, dark pixels, a share threshold.

A pixel is dark when its greyscale value (OpenCV's RGB→GRAY weights) is ≤ `cutoff` (default 60); a frame
is STOP when the share of dark pixels is greater than `share` (default 0.065). The published experiment
scored 82% accuracy with it on real data. It cannot tell a tin can from a dark mat or a shadow, which is
the point of the CNN. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vision.errors import VisionError
from vision.labels import GO, STOP

DEFAULT_CUTOFF = 60
DEFAULT_SHARE = 0.065


@dataclass(frozen=True, slots=True)
class IntensityBaseline:
    """`predict(rgb)`: STOP (1) when more than `share` of the pixels have grey ≤ `cutoff`, else GO (0)."""

    cutoff: int = DEFAULT_CUTOFF
    share: float = DEFAULT_SHARE

    def __post_init__(self) -> None:
        if not (isinstance(self.cutoff, int) and 0 <= self.cutoff <= 255):
            raise VisionError(f"baseline cutoff={self.cutoff!r}: must be an integer grey level in 0..255")
        if not (0.0 <= self.share < 1.0):
            raise VisionError(f"baseline share={self.share!r}: must be a fraction in [0, 1)")

    def dark_share(self, rgb: np.ndarray) -> float:
        """The fraction of the image's pixels whose grey value is ≤ cutoff."""
        return float(np.count_nonzero(grey(rgb) <= self.cutoff)) / (rgb.shape[0] * rgb.shape[1])

    def predict(self, rgb: np.ndarray) -> int:
        return STOP if self.dark_share(rgb) > self.share else GO

    def dark_shares(self, images: np.ndarray) -> np.ndarray:
        """Dark-pixel share of every image of an N×H×W×3 uint8 batch (float64, N)."""
        return np.fromiter((self.dark_share(img) for img in images), dtype=np.float64, count=len(images))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """Labels (int64, N) for an N×H×W×3 RGB uint8 batch."""
        return (self.dark_shares(images) > self.share).astype(np.int64)


def grey(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 H×W×3 → greyscale uint8 H×W (cv2.COLOR_RGB2GRAY: 0.299 R + 0.587 G + 0.114 B)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 H×W×3 image, got {rgb.dtype} with shape {rgb.shape}")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def mean_intensities(images: np.ndarray) -> np.ndarray:
    """The mean grey value of every image of a batch (what the per-class box plot shows)."""
    return np.fromiter((float(grey(img).mean()) for img in images), dtype=np.float64, count=len(images))
