"""Integrated gradients (Sundararajan et al., 2017) against several background frames.

For each reference r (up to `REFERENCES` background frames, evenly spaced) the gradient is averaged at
`STEPS` midpoints on the straight line from r to the frame and multiplied by (frame − r); the maps are the
mean over the references. Completeness: the values sum to f(frame) − mean f(r), up to the Riemann error of
`STEPS` points. Runs on the torch twin, on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explain.explainers.base import ExplainContext, Explainer, Explanation, check_outputs, torch_predict

REFERENCES = 4
STEPS = 16
POINTS_PER_PASS = 64  # interpolated inputs per forward/backward pass (memory, never the values)


def evenly(total: int, count: int) -> np.ndarray:
    if total <= count:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, count)).astype(int))


class IntegratedGradients(Explainer):
    name = "integrated-gradients"
    summary = f"integrated gradients, {STEPS} steps from each of {REFERENCES} background frames"
    frames_per_pass = 1

    def __init__(self, context: ExplainContext) -> None:
        self.context = context
        self.references = np.asarray(context.background[evenly(len(context.background), REFERENCES)])
        self.predict = torch_predict(context.network, context.device)
        self.reference_output = self.predict(self.references).mean(axis=0)

    def explain(self, frames: np.ndarray, outputs: Sequence[int]) -> Explanation:
        outs = check_outputs(outputs, self.reference_output.shape[0])
        values = np.stack([self._one(f, outs) for f in np.asarray(frames, dtype=np.float32)])
        return Explanation(
            values.astype(np.float32),
            outs,
            self.reference_output[list(outs)].astype(np.float64),
            self.predict(np.asarray(frames, dtype=np.float32))[:, list(outs)],
        )

    def _one(self, frame: np.ndarray, outs: tuple[int, ...]) -> np.ndarray:
        """(K, C, H, W) for one frame."""
        import torch

        alphas = (np.arange(STEPS, dtype=np.float32) + 0.5) / STEPS
        refs = self.references.astype(np.float32)
        delta = frame[None] - refs  # (R, C, H, W)
        points = (refs[:, None] + alphas[None, :, None, None, None] * delta[:, None]).reshape(
            -1, *frame.shape
        )
        grads = np.zeros((len(outs), *points.shape), dtype=np.float32)
        net, device = self.context.network, self.context.device
        for lo in range(0, len(points), POINTS_PER_PASS):
            x = torch.from_numpy(points[lo : lo + POINTS_PER_PASS]).to(device).requires_grad_(True)
            y = net(x)
            for i, o in enumerate(outs):
                (g,) = torch.autograd.grad(y[:, o].sum(), x, retain_graph=i < len(outs) - 1)
                grads[i, lo : lo + len(x)] = g.detach().cpu().numpy()
        mean_grad = grads.reshape(len(outs), len(refs), STEPS, *frame.shape).mean(axis=2)
        return (mean_grad * delta[None]).mean(axis=1)


def make(context: ExplainContext) -> Explainer:
    return IntegratedGradients(context)
