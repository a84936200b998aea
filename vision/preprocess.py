"""The one preprocessing path from a camera image to a network input.

Training, live inference, replay and explanation all call `fit_to_input` and `to_network_input`;
their numbers (input size, mean, std) come from the model bundle's manifest (`Preprocessing`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How an RGB uint8 image becomes a float32 NCHW tensor. Stored in every bundle's manifest."""

    input_size: int = INPUT_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"

    def to_dict(self) -> dict[str, object]:
        return {
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Preprocessing:
        order = str(d.get("channel_order", "RGB"))
        if order != "RGB":
            raise ValueError(f"manifest preprocessing.channel_order={order!r}: only 'RGB' is supported")
        mean = tuple(float(v) for v in d["mean"])  # type: ignore[attr-defined]
        std = tuple(float(v) for v in d["std"])  # type: ignore[attr-defined]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(
                f"manifest preprocessing: mean {list(mean)} and std {list(std)} need 3 values each, std > 0"
            )
        size = d["input_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"manifest preprocessing.input_size={size!r} must be a positive whole number")
        return cls(size, mean, std, order)


def fit_to_input(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Centre-crop to a square (keeping the aspect ratio) and resize to `size`×`size`.

    A frame already of the right size is returned as is (no copy). Uses area interpolation when
    shrinking, linear when enlarging.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 H×W×3 image, got {rgb.dtype} with shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if h == size and w == size:
        return rgb
    side = min(h, w)
    top = (h - side) // 2
    left = (w - side) // 2
    square = rgb[top : top + side, left : left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp)


def to_network_input(images: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """RGB uint8 N×H×W×3 (or one H×W×3) at the input size → normalised float32 N×3×H×W, C-contiguous."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 N×H×W×3 images, got {images.dtype} {images.shape}")
    if images.shape[1] != prep.input_size or images.shape[2] != prep.input_size:
        raise ValueError(
            f"images are {images.shape[1]}×{images.shape[2]}, the network wants "
            f"{prep.input_size}×{prep.input_size}: pass them through fit_to_input first"
        )
    tables = level_tables(tuple(prep.mean), tuple(prep.std))
    out = np.empty((images.shape[0], 3, images.shape[1], images.shape[2]), dtype=np.float32)
    for c in range(3):  # a uint8 index is always in range: 'clip' skips numpy's bounds-check buffering
        np.take(tables[c], images[..., c], out=out[:, c], mode="clip")
    return out


def normalise_arithmetic(images: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """`to_network_input` as plain arithmetic on every pixel: the reference its level tables must equal bit
    for bit (tests) and the speed they are measured against (bench `preprocess`). N×H×W×3 uint8 in."""
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(prep.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(prep.std, dtype=np.float32)
    x = (images.astype(np.float32) * scale - mean) * inv_std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@functools.lru_cache(maxsize=16)
def level_tables(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """3×256 float32: each channel's normalised value of every uint8 level.

    `to_network_input` looks pixels up here instead of computing `(x / 255 - mean) / std` per pixel:
    several times faster (`python -m bench preprocess` measures it), and bit-identical, because each table
    entry is that very float32 arithmetic, `(x * float32(1/255) - mean) * (1 / std)`, done once per level
    (tested on every level).
    """
    levels = np.arange(256, dtype=np.float32)[None, :]
    scale = np.float32(1.0 / 255.0)
    mean_ = np.asarray(mean, dtype=np.float32)[:, None]
    inv_std = np.float32(1.0) / np.asarray(std, dtype=np.float32)[:, None]
    tables = (levels * scale - mean_) * inv_std
    tables.setflags(write=False)
    return tables


def preprocess(rgb: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """One camera image of any size → a 1×3×S×S network input."""
    return to_network_input(fit_to_input(rgb, prep.input_size), prep)
