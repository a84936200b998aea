"""The frame type every source produces and every consumer reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What the simulated world knows about a frame (absent for real cameras).

    `distance_m` is the can's distance along the car's path (None when there is no can),
    `lateral_m` its offset from the path's centre line, `mask` the can's pixels (bool H×W),
    `scene` a short tag of what was placed ("can_path", "can_side", "dark_mat", ...).
    """

    label: int
    distance_m: float | None = None
    lateral_m: float | None = None
    mask: np.ndarray | None = None
    scene: str = ""


@dataclass(frozen=True, slots=True)
class Frame:
    """One camera image: RGB uint8 H×W×3, with a sequence number and a monotonic capture time (s)."""

    seq: int
    t_capture: float
    rgb: np.ndarray
    source: str
    truth: GroundTruth | None = None
