"""Where the network looked: numbers computed from one frame's attribution map.

All maps here are pixel maps (H×W): DeepSHAP values summed over the colour channels. "Positive STOP
attribution" is the part of the STOP map that raises P(STOP); shares are fractions of its total.

- Focus (with ground truth): the share of positive STOP attribution inside the can's mask, dilated by a
  few pixels (the can's outline and its contact shadow count as the can), beside the share of the image
  that mask covers, which is what a map spread at random would score.
- Pointing game: is the strongest STOP pixel on the (dilated) can?
- Without ground truth: the share below the horizon (the can stands on the floor) and the grid cells that
  hold the most positive STOP attribution.

The audit reads them through the registry in `explain.audit_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vision.preprocess import fit_to_input

DILATE_FRACTION = 0.02  # of the image side: 4-5 px at 224
BACKGROUND_SHARE = 0.5  # a STOP resting less than this on the can (or below the horizon) is flagged
GRID = 4
GRID_ROWS = ("top", "upper", "lower", "bottom")
GRID_COLS = ("left", "centre-left", "centre-right", "right")


@dataclass(frozen=True, slots=True)
class Focus:
    """The share of positive STOP attribution on the can vs the share of the image the can covers."""

    on_can: float
    can_area: float
    pointing_hit: bool


@dataclass(frozen=True, slots=True)
class Region:
    """One cell of a GRID×GRID split of the image and its share of positive STOP attribution."""

    row: int
    col: int
    share: float

    @property
    def name(self) -> str:
        return f"{GRID_ROWS[self.row]} {GRID_COLS[self.col]}"


@dataclass(frozen=True, slots=True)
class Look:
    """Ground-truth-free description of where positive STOP attribution lies."""

    below_horizon: float
    top_regions: tuple[Region, ...]


def pixel_map(values: np.ndarray) -> np.ndarray:
    """(C, H, W) attribution → (H, W), summed over channels (float64)."""
    if values.ndim != 3:
        raise ValueError(f"expected C×H×W attributions, got shape {values.shape}")
    return values.astype(np.float64).sum(axis=0)


def positive_share(pmap: np.ndarray, region: np.ndarray) -> float:
    """Share of the map's positive mass inside the boolean `region` (0 when the map has none)."""
    pos = np.clip(pmap, 0.0, None)
    total = float(pos.sum())
    return float(pos[region].sum()) / total if total > 0 else 0.0


def mask_to_input(mask: np.ndarray, size: int) -> np.ndarray:
    """A frame-sized boolean mask → the network input's geometry (the same crop and resize as the frame)."""
    if mask.ndim != 2:
        raise ValueError(f"expected an H×W mask, got shape {mask.shape}")
    as_rgb = np.repeat((mask.astype(np.uint8) * 255)[:, :, None], 3, axis=2)
    return fit_to_input(as_rgb, size)[:, :, 0] >= 128


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    if pixels <= 0:
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def dilation_pixels(size: int) -> int:
    return max(1, round(DILATE_FRACTION * size))


def focus(stop_map: np.ndarray, can_mask: np.ndarray) -> Focus | None:
    """Focus of a STOP pixel map on a can mask already at the map's size; None when there is no can."""
    if not can_mask.any():
        return None
    region = dilate(can_mask, dilation_pixels(stop_map.shape[0]))
    strongest = np.unravel_index(int(np.argmax(stop_map)), stop_map.shape)
    return Focus(
        on_can=positive_share(stop_map, region),
        can_area=float(region.mean()),
        pointing_hit=bool(region[strongest]),
    )


def below_horizon_mask(size: int, horizon: float) -> np.ndarray:
    """Rows at or below `horizon` (a fraction of the height from the top) as a boolean size×size mask."""
    rows = np.arange(size)[:, None] >= round(horizon * size)
    return np.broadcast_to(rows, (size, size))


def look(stop_map: np.ndarray, horizon: float, regions: int = 3) -> Look:
    size = stop_map.shape[0]
    below = positive_share(stop_map, below_horizon_mask(size, horizon))
    pos = np.clip(stop_map, 0.0, None)
    total = float(pos.sum())
    h, w = stop_map.shape
    cells: list[Region] = []
    for r in range(GRID):
        for c in range(GRID):
            cell = pos[r * h // GRID : (r + 1) * h // GRID, c * w // GRID : (c + 1) * w // GRID]
            cells.append(Region(r, c, float(cell.sum()) / total if total > 0 else 0.0))
    cells.sort(key=lambda cell: -cell.share)
    return Look(below, tuple(cells[:regions]))
