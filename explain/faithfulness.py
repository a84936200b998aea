"""Faithfulness of attribution maps: does removing the most-attributed pixels change the output fastest?

A deletion curve (Petsiuk et al., "RISE", 2018; Samek et al., 2017): the pixels of a frame are replaced by
the mean background frame in the order of the map (most positive first), and the explained output is
read after each step, at `FRACTIONS` of the pixels removed. The same is done for `RANDOM_ORDERS` random
orders. The score (the *deletion gap*) is the mean, over the fractions and frames, of
(output with random pixels removed − output with the top-attributed pixels removed), divided by the
frame's own output: > 0 means the map ranks the pixels the output depends on first; 0 is what a random map
scores; 1 would mean the very first pixels removed take the whole output away. Like every deletion test it
feeds the network images it was not trained on (ROAD, Rong et al. 2022), so compare methods on the same
frames and network, not across networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain.explainers.base import Predict

FRACTIONS = tuple(float(f) for f in np.linspace(0.0, 0.5, 11))
RANDOM_ORDERS = 3
TRUST_ABOVE = 0.05  # a method whose gap is not above this is "no better than random" in the report


@dataclass(frozen=True, slots=True)
class Faithfulness:
    """One method on some frames: the deletion gap and the mean curves."""

    method: str
    frames: int
    score: float  # the deletion gap (see the module docstring)
    fractions: tuple[float, ...]
    deletion: tuple[float, ...]  # mean output with the top-attributed share removed
    random: tuple[float, ...]  # the same for random orders


def removal_batch(frame: np.ndarray, order: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The frame (C, H, W) with the first k pixels of `order` (flat H×W indices) replaced by `fill`,
    for every k of FRACTIONS."""
    c, h, w = frame.shape
    out = np.repeat(frame[None], len(FRACTIONS), axis=0).reshape(len(FRACTIONS), c, h * w)
    flat_fill = fill.reshape(c, h * w)
    for i, f in enumerate(FRACTIONS):
        idx = order[: round(f * h * w)]
        out[i][:, idx] = flat_fill[:, idx]
    return out.reshape(len(FRACTIONS), c, h, w)


def deletion_gap(
    method: str,
    frames: np.ndarray,
    maps: np.ndarray,
    *,
    fill: np.ndarray,
    predict: Predict,
    output: int,
    seed: int = 0,
) -> Faithfulness:
    """`frames` (N, C, H, W) network inputs, `maps` (N, H, W) pixel maps of `output`, `fill` (C, H, W)."""
    rng = np.random.default_rng(seed)
    k = len(FRACTIONS)
    batches = []
    for frame, pmap in zip(frames, maps, strict=True):
        orders = [np.argsort(-pmap.ravel(), kind="stable")]
        orders += [rng.permutation(pmap.size) for _ in range(RANDOM_ORDERS)]
        batches += [removal_batch(frame, o, fill) for o in orders]
    out = predict(np.concatenate(batches))[:, output].reshape(len(frames), 1 + RANDOM_ORDERS, k)
    deletion = out[:, 0]
    random = out[:, 1:].mean(axis=1)
    start = np.maximum(out[:, 0, 0], 1e-3)  # fraction 0: the frame itself
    gap = ((random - deletion).mean(axis=1) / start).mean()
    return Faithfulness(
        method=method,
        frames=len(frames),
        score=float(gap),
        fractions=FRACTIONS,
        deletion=tuple(float(v) for v in deletion.mean(axis=0)),
        random=tuple(float(v) for v in random.mean(axis=0)),
    )


def verdict(rows: dict[str, Faithfulness], chosen: str) -> str:
    """One sentence for the report: which method's maps to trust on this network."""
    if not rows:
        return "Faithfulness was not measured (--faithfulness-frames 0)."
    best = max(rows.values(), key=lambda r: r.score)
    weak = sorted(r.method for r in rows.values() if r.score <= TRUST_ABOVE)
    text = (
        f"On this network, removing the pixels {best.method} ranks first lowers the output fastest "
        f"(deletion gap {best.score:.3f})"
    )
    if chosen in rows and chosen != best.method:
        text += f"; the maps in this report ({chosen}) score {rows[chosen].score:.3f}"
    if weak:
        text += f"; no better than random: {', '.join(weak)}"
    return text + "."
