"""Occlusion by a sliding window, on the ONNX network that actually drove (fp32 or INT8).

A square window (1/8 of the side, moved by half its width) is replaced by the mean background frame; a
pixel's value is the mean, over the windows that cover it, of f(frame) − f(frame with that window
replaced) (Zeiler & Fergus, 2014; Captum's convention). Black-box: only the network's outputs are used,
so it runs the very ONNX file the car ran, through onnxruntime. Without an ONNX file (the sanity check's
randomised copies) it runs the torch network instead. Not additive.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from explain.explainers.base import (
    ExplainContext,
    Explainer,
    Explanation,
    Predict,
    check_outputs,
    spread_over_channels,
    torch_predict,
)

WINDOW_SHARE = 1 / 8
BATCH = 64


def onnx_predict(path: Path, threads: int | None = None) -> Predict:
    """An onnxruntime session over `path` as a batched `Predict`.

    `threads` defaults to torch's thread count: the audit's one thread budget, which a fleet worker sets to
    its `--threads` (two single-thread workers on two cores must not run two 2-thread sessions)."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        outs = [
            np.asarray(
                session.run(None, {name: np.ascontiguousarray(x[lo : lo + BATCH], dtype=np.float32)})[0]
            )
            for lo in range(0, len(x), BATCH)
        ]
        return np.concatenate(outs).astype(np.float64)

    return run


def windows(size: int) -> list[tuple[int, int, int]]:
    """(top, left, side) of every window position over a size×size input, edges included."""
    side = max(2, round(size * WINDOW_SHARE))
    stride = max(1, side // 2)
    starts = list(range(0, size - side + 1, stride))
    if starts[-1] != size - side:
        starts.append(size - side)
    return [(top, left, side) for top in starts for left in starts]


class SlidingWindowOcclusion(Explainer):
    name = "occlusion"
    summary = "sliding-window occlusion on the ONNX network that drove (black-box, not additive)"
    frames_per_pass = 1

    def __init__(self, context: ExplainContext) -> None:
        if context.onnx is not None:
            raw, columns = onnx_predict(context.onnx), context.onnx_outputs
            self.predict = (
                raw if columns is None else (lambda x: np.asarray(columns(raw(x)), dtype=np.float64))
            )
        else:
            self.predict = torch_predict(context.network, context.device)
        self.fill = np.asarray(context.background, dtype=np.float32).mean(axis=0)
        self.reference_output = self.predict(self.fill[None])[0]

    def explain(self, frames: np.ndarray, outputs: Sequence[int]) -> Explanation:
        x = np.asarray(frames, dtype=np.float32)
        outs = check_outputs(outputs, self.reference_output.shape[0])
        base = self.predict(x)
        maps = np.stack([self._one(f, b, outs) for f, b in zip(x, base, strict=True)])
        return Explanation(
            spread_over_channels(maps, x.shape[1]),
            outs,
            self.reference_output[list(outs)].astype(np.float64),
            base[:, list(outs)],
        )

    def _one(self, frame: np.ndarray, base: np.ndarray, outs: tuple[int, ...]) -> np.ndarray:
        """(K, H, W) for one frame."""
        h, w = frame.shape[1:]
        spots = windows(min(h, w))
        occluded = np.repeat(frame[None], len(spots), axis=0)
        for i, (top, left, side) in enumerate(spots):
            occluded[i, :, top : top + side, left : left + side] = self.fill[
                :, top : top + side, left : left + side
            ]
        drop = base[None, list(outs)] - self.predict(occluded)[:, list(outs)]  # (windows, K)
        total = np.zeros((len(outs), h, w))
        count = np.zeros((h, w))
        for (top, left, side), d in zip(spots, drop, strict=True):
            total[:, top : top + side, left : left + side] += d[:, None, None]
            count[top : top + side, left : left + side] += 1
        return total / np.maximum(count, 1)


def make(context: ExplainContext) -> Explainer:
    return SlidingWindowOcclusion(context)
