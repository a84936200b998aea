"""The registry of network architectures: one line per network. No torch here (the car validates bundles).

Every place that names architectures derives from `ARCHITECTURES`: `car train --arch` and `car import --arch`
choices, `car bench`'s list, the bundle manifest's validation (`vision.bundle`) and `vision.networks.
build_network`. To add a network: write its torch builder (in `vision.networks`, or reuse a family's) and add
one `ArchSpec` line below; tests/test_networks.py builds every registered entry.

Two families:
- "gostop": this project's chain networks (seed, edge): fixed (GO, STOP) labels, two sigmoid outputs, a fixed
  224 input (their first Linear is sized for it). DeepSHAP's chain engine walks them.
- "torchvision": a torchvision classifier built with `weights=None` (never downloading) and its head sized
  to the number of labels, followed by the manifest's output layer (softmax or sigmoid). Any input side
  from `min_input` up works (their adaptive pooling fixes the head's input).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vision.labels import LABEL_NAMES

OUTPUT_KINDS = ("softmax", "sigmoid")
"""How the last layer turns scores into probabilities: exclusive (softmax) or independent (sigmoid)."""

Builder = Callable[["ArchSpec", int, str], Any]
"""(spec, number of labels, output kind) -> a freshly initialised torch `nn.Module` (imports torch itself)."""


def lazy(module: str, attr: str) -> Builder:
    """A builder that imports `module` only when a network is built (keeps this registry torch-free)."""

    def build(spec: ArchSpec, num_labels: int, output: str) -> Any:
        return getattr(importlib.import_module(module), attr)(spec, num_labels, output)

    build.__qualname__ = f"{module}.{attr}"
    return build


@dataclass(frozen=True, slots=True)
class ArchSpec:
    """What a network needs from its bundle's manifest, and how to build it."""

    name: str
    family: str
    build: Builder
    fixed_input: int | None = None
    """The only input side the network accepts (None: any side of at least `min_input`)."""
    min_input: int = 32
    fixed_labels: tuple[str, ...] | None = None
    outputs: tuple[str, ...] = OUTPUT_KINDS
    graph_order: str = "as-trained"
    """The default ONNX graph order for `vision.export` (Winograd knows the chain networks only)."""

    def problems(self, labels: Sequence[str], output: str, input_size: int) -> list[str]:
        """What is wrong with using this network with these labels, output kind and input side."""
        found: list[str] = []
        side = input_size
        if self.fixed_labels is not None and tuple(labels) != self.fixed_labels:
            found.append(f"arch {self.name!r} has labels {list(self.fixed_labels)}, not {list(labels)}")
        if output not in self.outputs:
            found.append(f"arch {self.name!r} has output {'|'.join(self.outputs)}, not {output!r}")
        if self.fixed_input is not None and input_size != self.fixed_input:
            found.append(f"arch {self.name!r} takes {self.fixed_input}×{self.fixed_input} input, not {side}")
        if input_size < self.min_input:
            found.append(f"arch {self.name!r} needs an input side of at least {self.min_input}, not {side}")
        return found


ARCHITECTURES: dict[str, ArchSpec] = {}


def register_arch(spec: ArchSpec) -> ArchSpec:
    ARCHITECTURES[spec.name] = spec
    return spec


def _gostop(name: str) -> ArchSpec:
    return ArchSpec(
        name,
        "gostop",
        lazy("vision.networks", "build_gostop"),
        fixed_input=224,
        fixed_labels=LABEL_NAMES,
        outputs=("sigmoid",),
        graph_order="winograd",
    )


def _torchvision(name: str, min_input: int = 32) -> ArchSpec:
    return ArchSpec(name, "torchvision", lazy("vision.networks", "build_torchvision"), min_input=min_input)


# One line per network.
register_arch(_gostop("seed"))
register_arch(_gostop("edge"))
register_arch(_torchvision("resnet18"))
register_arch(_torchvision("resnet34"))
register_arch(_torchvision("mobilenet_v2"))
register_arch(_torchvision("mobilenet_v3_small"))
register_arch(_torchvision("mobilenet_v3_large"))
# vgg and alexnet pool their features adaptively to 7×7 / 6×6; ONNX exports that only from a whole multiple.
register_arch(_torchvision("vgg11", min_input=224))
register_arch(_torchvision("vgg16", min_input=224))
register_arch(_torchvision("alexnet", min_input=224))


def arch_spec(name: str) -> ArchSpec:
    """The registered architecture, or a ValueError naming the choices."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}") from None


def names(family: str | None = None) -> tuple[str, ...]:
    """Registered architecture names (of one family), in registration order."""
    return tuple(n for n, s in ARCHITECTURES.items() if family is None or s.family == family)
