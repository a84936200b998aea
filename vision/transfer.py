"""Warm starts for `car train --init FILE|BUNDLE [--freeze backbone|stem]` and the weights of `car import`.

A start is local weights only (nothing is downloaded): a bundle folder (its verified `weights.pt`), or a torch
`state_dict` file read with `weights_only=True`, such as a torchvision ImageNet checkpoint a user has or a
JetBot `best_model.pth`. torchvision keys (`conv1.weight`) and this project's keys (`net.conv1.weight`, the
`vision.networks.Classifier` wrapper) are both accepted, as is the `module.` prefix of DataParallel saves.

Every tensor of the network must come from the start with its shape, except the classifier head (the last
Linear): a head of another size (1000 ImageNet classes into 2 labels) is left freshly initialised, and
`InitReport` says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vision.bundle import MANIFEST_NAME, BundleError, load_bundle
from vision.errors import VisionError
from vision.networks import Classifier, head_linear, stem_modules


class InitError(VisionError, ValueError):
    """Weights that cannot start this network; the message names the file and the first misfit."""


@dataclass(frozen=True, slots=True)
class InitSource:
    """Weights read from a file or bundle, with what the bundle says about them (None for a bare file)."""

    path: Path
    state: dict[str, torch.Tensor]
    arch: str | None = None
    bundle_root: Path | None = None


@dataclass(frozen=True, slots=True)
class InitReport:
    loaded: int
    reinitialised: tuple[str, ...]
    frozen: int = 0

    def describe(self) -> str:
        head = f", head re-initialised ({', '.join(self.reinitialised)})" if self.reinitialised else ""
        frozen = f", {self.frozen} tensors frozen" if self.frozen else ""
        return f"{self.loaded} tensors loaded{head}{frozen}"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict of tensors from a file (`weights_only=True`), or a one-line InitError."""
    if not path.is_file():
        raise InitError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InitError(
            f"{path}: not a torch state_dict that loads with weights_only=True ({first[:160]}); "
            "save one with torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint that wraps its state_dict
    tensors = isinstance(state, Mapping) and all(isinstance(v, torch.Tensor) for v in state.values())
    if not tensors or not state:
        what = type(state).__name__ if not isinstance(state, Mapping) else "a dict that is not all tensors"
        raise InitError(
            f"{path}: expected a state_dict (a dict of named tensors), got {what}; "
            "save one with torch.save(model.state_dict(), FILE)"
        )
    return {_strip(str(k), "module."): v for k, v in state.items()}


def read_init(source: str | Path) -> InitSource:
    """A bundle folder (or its manifest.json) or a state_dict file."""
    path = Path(source)
    if path.is_dir() or path.name == MANIFEST_NAME:
        from vision.torch_model import load_state_dict

        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            raise InitError(f"--init {path}: {exc}") from None
        return InitSource(path, load_state_dict(bundle), bundle.manifest.arch, bundle.root)
    return InitSource(path, read_state_dict(path))


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _keyed_for(network: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with the network's key prefix: torchvision keys gain `net.` for a `Classifier`."""
    if isinstance(network, Classifier) and not any(k.startswith("net.") for k in state):
        return {f"net.{k}": v for k, v in state.items()}
    return dict(state)


def fit_state(
    network: nn.Module, state: Mapping[str, torch.Tensor], where: str, allow_new_head: bool = True
) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """The state to load into `network`, and the head tensors left as initialised (their shape differs).

    Raises InitError naming the first missing, unexpected or misshapen tensor."""
    state = _keyed_for(network, state)
    expected = network.state_dict()
    head = head_linear(network)
    head_keys = {f"{head}.weight", f"{head}.bias"}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise InitError(
            f"{where}: does not fit this architecture ({len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(extra)} unexpected, e.g. {extra[:3]}); check --arch"
        )
    fitted: dict[str, torch.Tensor] = {}
    new_head: list[str] = []
    for key, tensor in expected.items():
        given = state[key]
        if tuple(given.shape) == tuple(tensor.shape):
            fitted[key] = given
        elif key in head_keys and allow_new_head:
            new_head.append(key)
        else:
            hint = "; check --labels (one output per label)" if key in head_keys else "; check --arch"
            raise InitError(
                f"{where}: {_strip(key, 'net.')} has shape {tuple(given.shape)}, this network needs "
                f"{tuple(tensor.shape)}{hint}"
            )
    return fitted, tuple(new_head)


def apply_init(network: nn.Module, source: InitSource) -> InitReport:
    """Load `source` into `network` in place (the head stays new if its size differs)."""
    fitted, new_head = fit_state(network, source.state, f"--init {source.path}")
    network.load_state_dict(fitted, strict=False)
    return InitReport(loaded=len(fitted), reinitialised=new_head)


def _backbone(network: nn.Module) -> list[str]:
    head = head_linear(network)
    return [name for name, _ in network.named_modules() if name and name != head]


FREEZES: dict[str, Callable[[nn.Module], list[str]]] = {
    "stem": stem_modules,
    "backbone": _backbone,
}
"""--freeze choice -> the modules whose parameters stay as initialised during training."""


def freeze(network: nn.Module, what: str) -> int:
    """Stop training the named part's parameters; returns how many tensors were frozen."""
    try:
        modules = FREEZES[what](network)
    except KeyError:
        raise InitError(f"--freeze {what}: choose one of {sorted(FREEZES)}") from None
    frozen = 0
    for name in modules:
        for param in network.get_submodule(name).parameters(recurse=False):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def keep_frozen_batchnorm_in_eval(network: nn.Module) -> None:
    """BatchNorm layers whose parameters are frozen keep their running statistics (call after `.train()`)."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
