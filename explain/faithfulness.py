"""Faithfulness of attribution maps: does removing the most-attributed pixels change the output fastest?

A deletion curve (Petsiuk et al., "RISE", 2018; Samek et al., 2017): the pixels of a frame are replaced by
the mean background frame in the order of the map (most positive first), and the explained output is
read after each step, at `FRACTIONS` of the pixels removed (doubling from 0.25%: the object a decision
rests on often covers a few percent of the image, and a curve that only starts at 5% misses it). The
same is done for `RANDOM_ORDERS` random orders, drawn once and shared by every method. The score (the
*deletion gap*) is the mean, over the non-zero fractions and the frames, of
(output with random pixels removed − output with the top-attributed pixels removed), divided by the
frame's own output: > 0 means the map ranks the pixels the output depends on first; 0 is what a random map
scores; 1 would mean the very first pixels removed take the whole output away. Like every deletion test it
feeds the network images it was not trained on (ROAD, Rong et al. 2022), so compare methods on the same
frames and network, not across networks. Frames whose output is below `MIN_OUTPUT` are left out: a gap
relative to a near-zero output is noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explain.explainers.base import Predict

FRACTIONS = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)  # of the pixels; small steps first
RANDOM_ORDERS = 3
MIN_OUTPUT = 0.1  # frames whose output is below this have nothing to delete: left out
TIE = 0.02  # deletion gaps closer than this to the best are named together
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


def _curves(
    frames: np.ndarray, orders: list[list[np.ndarray]], fill: np.ndarray, predict: Predict, output: int
) -> np.ndarray:
    """(frames, orders, fractions) outputs; `orders[i]` the pixel orders of frame i."""
    batches = [
        removal_batch(f, o, fill)
        for f, frame_orders in zip(frames, orders, strict=True)
        for o in frame_orders
    ]
    return predict(np.concatenate(batches))[:, output].reshape(len(frames), len(orders[0]), len(FRACTIONS))


def faithfulness_of(
    maps_by_method: dict[str, np.ndarray],
    frames: np.ndarray,
    *,
    fill: np.ndarray,
    predict: Predict,
    output: int,
    seed: int = 0,
) -> tuple[Faithfulness, ...]:
    """The deletion gap of each method's maps (N, H, W) of `output` on `frames` (N, C, H, W) network inputs,
    `fill` (C, H, W) the replacement. The random orders are drawn once and shared by every method."""
    rng = np.random.default_rng(seed)
    size = frames.shape[2] * frames.shape[3]
    shuffled = [[rng.permutation(size) for _ in range(RANDOM_ORDERS)] for _ in frames]
    random = _curves(frames, shuffled, fill, predict, output).mean(axis=1)  # (N, fractions)
    start = np.maximum(random[:, 0], 1e-3)  # fraction 0: the frame itself
    rows = []
    for method, maps in maps_by_method.items():
        ranked = [[np.argsort(-m.ravel(), kind="stable")] for m in maps]
        deletion = _curves(frames, ranked, fill, predict, output)[:, 0]
        gap = ((random - deletion)[:, 1:].mean(axis=1) / start).mean()
        rows.append(
            Faithfulness(
                method=method,
                frames=len(frames),
                score=float(gap),
                fractions=FRACTIONS,
                deletion=tuple(float(v) for v in deletion.mean(axis=0)),
                random=tuple(float(v) for v in random.mean(axis=0)),
            )
        )
    return tuple(rows)


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
    """One method's `faithfulness_of`."""
    (row,) = faithfulness_of({method: maps}, frames, fill=fill, predict=predict, output=output, seed=seed)
    return row


def verdict(rows: dict[str, Faithfulness], chosen: str) -> str:
    """One sentence for the report: which method's maps to trust on this network. Methods within TIE of
    the best score are named together (a smaller difference is within the spread of a few frames)."""
    if not rows:
        return "Faithfulness was not measured."
    best = max(r.score for r in rows.values())
    top = [r for r in sorted(rows.values(), key=lambda r: -r.score) if r.score >= best - TIE]
    weak = sorted(r.method for r in rows.values() if r.score <= TRUST_ABOVE)
    named = " and ".join(f"{r.method} ({r.score:.3f})" for r in top)
    text = f"On this network, removing the pixels ranked first by {named} lowers P(STOP) fastest"
    if chosen in rows and all(r.method != chosen for r in top):
        text += f"; the maps in this report ({chosen}) score {rows[chosen].score:.3f}"
    if weak:
        text += f"; no better than random: {', '.join(weak)}"
    return text + "."
