"""Occlusion checks from the companion experiment: hide half the image and see what the network does.

The top half, then the bottom half, is replaced by white, black or noise. For each of the six variants:
how many decisions change, how P(STOP) moves, and where positive STOP attribution goes (its share in the
top half, before and after). A network that stops for the can should lose its STOP when the bottom half
(where a near can stands) is hidden, and barely care about the top half.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from explain.metrics import below_horizon_mask, pixel_map, positive_share

TOP_HALF = 0.5


class Fill(ABC):
    name: str

    @abstractmethod
    def pixels(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray: ...


class WhiteFill(Fill):
    name = "white"

    def pixels(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.full(shape, 255, dtype=np.uint8)


class BlackFill(Fill):
    name = "black"

    def pixels(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.zeros(shape, dtype=np.uint8)


class NoiseFill(Fill):
    name = "noise"

    def pixels(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)


FILLS: dict[str, Fill] = {f.name: f for f in (WhiteFill(), BlackFill(), NoiseFill())}
HALVES = ("top", "bottom")


@dataclass(frozen=True, slots=True)
class Occlusion:
    half: str  # "top" or "bottom"
    fill: str  # a FILLS key

    @property
    def name(self) -> str:
        return f"{self.half} {self.fill}"

    def apply(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = rgb.copy()
        split = rgb.shape[0] // 2
        rows = slice(0, split) if self.half == "top" else slice(split, rgb.shape[0])
        region = out[rows]
        region[...] = FILLS[self.fill].pixels(region.shape, rng)
        return out


VARIANTS: tuple[Occlusion, ...] = tuple(Occlusion(h, f) for h in HALVES for f in FILLS)


@dataclass(frozen=True, slots=True)
class OcclusionRow:
    """One variant over the checked frames."""

    variant: str
    frames: int
    decisions_changed: int
    stop_before: float  # mean P(STOP)
    stop_after: float
    top_share_before: float  # mean share of positive STOP attribution in the top half
    top_share_after: float


# explain(rgb N×S×S×3) → (P(STOP) per frame, STOP pixel maps N×S×S)
MapFunction = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def top_share(stop_maps: np.ndarray) -> np.ndarray:
    size = stop_maps.shape[-1]
    top = ~below_horizon_mask(size, TOP_HALF)
    return np.asarray([positive_share(m, top) for m in stop_maps])


def occlusion_table(
    rgb: np.ndarray, explain: MapFunction, threshold: float, seed: int = 0
) -> tuple[OcclusionRow, ...]:
    """Run every variant on frames `rgb` (N×S×S×3, network input size)."""
    p_before, maps_before = explain(rgb)
    share_before = top_share(maps_before)
    rows: list[OcclusionRow] = []
    for i, variant in enumerate(VARIANTS):
        rng = np.random.default_rng([seed, i])
        occluded = np.stack([variant.apply(f, rng) for f in rgb])
        p_after, maps_after = explain(occluded)
        changed = int(((p_before >= threshold) != (p_after >= threshold)).sum())
        rows.append(
            OcclusionRow(
                variant=variant.name,
                frames=len(rgb),
                decisions_changed=changed,
                stop_before=float(p_before.mean()),
                stop_after=float(p_after.mean()),
                top_share_before=float(share_before.mean()),
                top_share_after=float(top_share(maps_after).mean()),
            )
        )
    return tuple(rows)


def stop_pixel_maps(values: Sequence[np.ndarray]) -> np.ndarray:
    """(C, H, W) STOP attributions → (N, H, W) pixel maps."""
    return np.stack([pixel_map(v) for v in values])
