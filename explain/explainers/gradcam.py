"""Grad-CAM (Selvaraju et al., 2017) on the network's last convolution.

The map is ReLU(Σ_c α_c A_c), A the last `Conv2d`'s output and α_c the spatial mean of ∂output/∂A_c,
upsampled (bilinear) to the input size. It is non-negative and coarse (one value per cell of the last
feature map), and not additive: `expected` is the mean output over the background, for reference only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from explain.errors import ExplainError
from explain.explainers.base import (
    ExplainContext,
    Explainer,
    Explanation,
    check_outputs,
    spread_over_channels,
    torch_predict,
)

if TYPE_CHECKING:
    import torch
    from torch import nn


def last_conv(network: nn.Module) -> nn.Module:
    from torch import nn

    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ExplainError("--method gradcam needs a network with a convolution; choose another --method")
    return convs[-1]


class GradCam(Explainer):
    name = "gradcam"
    summary = "Grad-CAM on the last convolution (coarse, non-negative, not additive)"

    def __init__(self, context: ExplainContext) -> None:
        self.context = context
        self.layer = last_conv(context.network)
        self.reference_output = torch_predict(context.network, context.device)(context.background).mean(0)

    def explain(self, frames: np.ndarray, outputs: Sequence[int]) -> Explanation:
        import torch
        import torch.nn.functional as F

        outs = check_outputs(outputs, self.reference_output.shape[0])
        x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).to(self.context.device)
        seen: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            y = self.context.network(x)
        finally:
            handle.remove()
        activation = seen[-1]
        maps = []
        for i, o in enumerate(outs):
            (g,) = torch.autograd.grad(y[:, o].sum(), activation, retain_graph=i < len(outs) - 1)
            weights = g.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
            maps.append(F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0])
        pixel = torch.stack(maps, dim=1).detach().cpu().numpy()  # (N, K, H, W)
        return Explanation(
            spread_over_channels(pixel, x.shape[1]),
            outs,
            self.reference_output[list(outs)].astype(np.float64),
            y.detach().cpu().numpy().astype(np.float64)[:, list(outs)],
        )


def make(context: ExplainContext) -> Explainer:
    return GradCam(context)
