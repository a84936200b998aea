"""The cascading-randomisation sanity check (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

The network's weighted layers are re-initialised one after the other from the output down, and the STOP
maps are recomputed after each step. Maps that explain the network must change as its weights are
destroyed; the Spearman rank correlation between the trained network's maps and each randomised
network's maps says how much they did. Maps that do not change are showing the image, not the network.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from explain.metrics import pixel_map

PASS_BELOW = 0.5  # fully randomised maps must correlate less than this with the trained network's


@dataclass(frozen=True, slots=True)
class SanityStep:
    """After re-initialising every weighted layer from the top down to `layer`."""

    layer: str
    rank_correlation: float  # signed maps, mean over the checked frames
    rank_correlation_abs: float  # |maps|


@dataclass(frozen=True, slots=True)
class SanityCheck:
    frames: int
    background: int
    steps: tuple[SanityStep, ...]

    @property
    def final(self) -> float:
        return self.steps[-1].rank_correlation if self.steps else float("nan")

    @property
    def passed(self) -> bool:
        return bool(self.steps) and self.final < PASS_BELOW


# maps(model) → STOP pixel maps (N, H, W) of the checked frames
MapMaker = Callable[[nn.Module], np.ndarray]


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules with a `reset_parameters`, in registration (= forward, for chains) order."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if not list(m.children()) and any(True for _ in m.parameters()) and hasattr(m, "reset_parameters")
    ]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    rho = spearmanr(a.ravel(), b.ravel()).statistic
    return float(rho) if np.isfinite(rho) else 0.0


def cascading_randomisation(model: nn.Module, maps: MapMaker, seed: int = 0) -> SanityCheck:
    """Spearman ρ between trained and progressively randomised STOP maps, one step per weighted layer."""
    reference = maps(model)
    randomised = copy.deepcopy(model).eval()
    torch.manual_seed(seed)
    steps: list[SanityStep] = []
    for name, module in reversed(weighted_layers(randomised)):
        module.reset_parameters()  # type: ignore[operator]
        current = maps(randomised)
        signed = np.mean([rank_correlation(r, c) for r, c in zip(reference, current, strict=True)])
        absolute = np.mean(
            [rank_correlation(np.abs(r), np.abs(c)) for r, c in zip(reference, current, strict=True)]
        )
        steps.append(SanityStep(name, float(signed), float(absolute)))
    return SanityCheck(frames=len(reference), background=0, steps=tuple(steps))


def stop_maps_of(values: np.ndarray) -> np.ndarray:
    """(N, C, H, W) STOP values → (N, H, W) pixel maps."""
    return np.stack([pixel_map(v) for v in values])
