"""The GO/STOP networks (torch). Imported only by training, export and explanation, never on the car.

Rules that keep DeepSHAP (shap.DeepExplainer) able to walk them: every activation and pooling layer is
its own module instance, nothing is in-place, and no functional activations are used in `forward`.
Both networks end in two independent sigmoid outputs, (GO, STOP), as published.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {}


def register(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    def deco(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        ARCHITECTURES[name] = factory
        return factory

    return deco


def _conv_pool_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=False),
    ]


class SeedNet(nn.Module):
    """The published architecture, exactly.

    3×[Conv3×3 (16/32/64), MaxPool 2, ReLU], Dropout 0.25, Linear 50176→500, ReLU, Linear 500→2, Sigmoid.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_pool_relu(3, 16), *_conv_pool_relu(16, 32), *_conv_pool_relu(32, 64)
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(64 * 28 * 28, 500),
            nn.ReLU(inplace=False),
            nn.Linear(500, 2),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class EdgeNet(nn.Module):
    """A compact variant for small computers (~0.22 M weights, ~0.9 MB as ONNX, ~10 M MACs a frame).

    The seed network's Linear 50176→500 is 25 M weights (100 MB) read from memory for every frame. Here a
    4×4 stride-4 "patch" convolution and three pooled stages shrink the map to 64×7×7 before a small head,
    so the weights fit in a CPU's cache. The layout keeps the image's spatial arrangement up to the head (a
    near can sits low in the frame; the head can tell where).

    The stem is also what makes the audit affordable: exact DeepSHAP runs every layer backward once per
    background frame and output (200 rows a frame), so its cost follows the size of the early feature
    maps. A non-overlapping stem has no 224×224 or 112×112 maps at all, and its backward pass is one
    matrix product (explain/deepshap.py) instead of a transposed convolution.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, kernel_size=4, stride=4),  # 224 -> 56, non-overlapping 4×4 patches
            nn.MaxPool2d(2),  # -> 28
            nn.ReLU(inplace=False),
            *_conv_pool_relu(16, 32),  # -> 14
            *_conv_pool_relu(32, 64),  # -> 7
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 64),
            nn.ReLU(inplace=False),
            nn.Linear(64, 2),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


register("seed")(SeedNet)
register("edge")(EdgeNet)


def build_network(arch: str) -> nn.Module:
    """A freshly initialised network of a registered architecture."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}") from None
    return factory()
