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


def _conv_pool_relu(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1),
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
    """A compact variant for small computers (~0.26 M weights, ~1 MB as ONNX).

    The seed network's Linear 50176→500 is 25 M weights (100 MB) read from memory for every frame. Here a
    stride-2 first convolution and a fourth conv stage shrink the map to 64×7×7 before a small head, so the
    per-frame work is a few tens of MFLOPs and the weights fit in a CPU's cache. The layout keeps the image's
    spatial arrangement up to the head (a near can sits low in the frame; the head can tell where).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_pool_relu(3, 16, stride=2),  # 224 -> 112 -> 56
            *_conv_pool_relu(16, 32),  # -> 28
            *_conv_pool_relu(32, 64),  # -> 14
            *_conv_pool_relu(64, 64),  # -> 7
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
