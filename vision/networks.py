"""The networks' torch builders. Imported only by training, export and explanation, never on the car.

Which networks exist, and what each needs from a manifest, is `vision.architectures.ARCHITECTURES` (no torch);
this module builds them. The project's own chain networks (seed, edge) follow rules that keep DeepSHAP
(shap.DeepExplainer) able to walk them: every activation and pooling layer is its own module instance,
nothing is in-place, and no functional activations are used in `forward`. Both end in two independent
sigmoid outputs, (GO, STOP), as published. torchvision classifiers are wrapped in `Classifier` (the
torchvision network under `net`, then the output layer), so every built network outputs probabilities.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vision.architectures import ARCHITECTURES, ArchSpec, arch_spec, register_arch
from vision.labels import LABEL_NAMES

__all__ = ["ARCHITECTURES", "Classifier", "EdgeNet", "SeedNet", "build_network", "register"]

GOSTOP_NETWORKS: dict[str, Callable[[], nn.Module]] = {}
"""The chain networks' classes by name (the registry's "gostop" family builds from here)."""


def register(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Register a (GO, STOP) sigmoid chain network class under `name`, for any input side (tests use it)."""

    def deco(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        GOSTOP_NETWORKS[name] = factory
        register_arch(
            ArchSpec(
                name,
                "gostop",
                build_gostop,
                fixed_labels=LABEL_NAMES,
                outputs=("sigmoid",),
                graph_order="winograd",
            )
        )
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


GOSTOP_NETWORKS.update(seed=SeedNet, edge=EdgeNet)

OUTPUT_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "softmax": lambda: nn.Softmax(dim=1),
    "sigmoid": nn.Sigmoid,
}
"""The manifest's output kind -> the last layer (`vision.architectures.OUTPUT_KINDS`)."""


class Classifier(nn.Module):
    """A torchvision classifier (`net`, producing scores) followed by its output layer (`output`)."""

    def __init__(self, net: nn.Module, output: str) -> None:
        super().__init__()
        self.net = net
        self.output = OUTPUT_LAYERS[output]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.net(x))


def build_gostop(spec: ArchSpec, num_labels: int, output: str) -> nn.Module:
    """seed, edge (and test networks registered with `register`): two sigmoid outputs (GO, STOP)."""
    if num_labels != len(LABEL_NAMES) or output != "sigmoid":
        raise ValueError(f"arch {spec.name!r} has 2 sigmoid outputs (GO, STOP), not {num_labels} {output}")
    return GOSTOP_NETWORKS[spec.name]()


def build_torchvision(spec: ArchSpec, num_labels: int, output: str) -> nn.Module:
    """torchvision's `spec.name` with `weights=None` (nothing is downloaded) and a `num_labels`-way head.

    The head is the one torchvision builds for `num_classes` (resnet `fc`, alexnet/vgg `classifier.6`,
    mobilenet `classifier.1`/`.3`): the shape JetBot and most fine-tuning recipes give it.
    """
    import torchvision

    net = getattr(torchvision.models, spec.name)(weights=None, num_classes=num_labels)
    return Classifier(net, output)


def build_network(arch: str, num_labels: int = 2, output: str = "sigmoid") -> nn.Module:
    """A freshly initialised network of a registered architecture (2 sigmoid outputs unless told)."""
    spec = arch_spec(arch)
    if output not in OUTPUT_LAYERS:
        raise ValueError(f"output {output!r}: choose one of {sorted(OUTPUT_LAYERS)}")
    return spec.build(spec, num_labels, output)


def head_linear(network: nn.Module) -> str:
    """The qualified name of the last Linear layer (the classifier head that maps features to labels)."""
    last = [name for name, m in network.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError(f"{type(network).__name__} has no Linear layer to serve as its head")
    return last[-1]


def stem_modules(network: nn.Module) -> list[str]:
    """The stem: the first convolution, with the BatchNorm that directly follows it if there is one."""
    named = [(n, m) for n, m in network.named_modules() if not list(m.children())]
    first = next((i for i, (_, m) in enumerate(named) if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise ValueError(f"{type(network).__name__} has no convolution to serve as its stem")
    stem = [named[first][0]]
    if first + 1 < len(named) and isinstance(named[first + 1][1], nn.BatchNorm2d):
        stem.append(named[first + 1][0])
    return stem
