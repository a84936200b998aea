"""The torch twin of a bundle's network (desktop only: training, export, explanation).

Weights are a `torch.save`d state_dict read back with `weights_only=True` (no pickled code runs), checked
against the manifest's sha256 and against the architecture's parameter names and shapes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vision.bundle import BundleError, ModelBundle, sha256_of
from vision.detector import GoStop
from vision.detector_contract import check_batch, check_probs
from vision.networks import build_network


def load_state_dict(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    path = bundle.path_of("weights")
    entry = bundle.manifest.files["weights"]
    if not path.is_file():
        raise BundleError(f"{path}: missing weights file of the bundle; copy the bundle folder again")
    if sha256_of(path) != entry.sha256:
        raise BundleError(f"{path}: sha256 does not match the manifest; copy the bundle folder again")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BundleError(f"{path}: not a readable weights file ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(f"{path}: expected a state_dict of tensors; re-export the bundle")
    return state


def load_torch_network(bundle: ModelBundle, device: str = "cpu") -> nn.Module:
    """The bundle's network with its weights, in eval mode."""
    m = bundle.manifest
    try:
        network = build_network(m.arch, len(m.labels), m.output)
    except ValueError as exc:
        raise BundleError(f"{bundle.root}: {exc}") from None
    state = load_state_dict(bundle)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise BundleError(
            f"{bundle.path_of('weights')}: weights do not fit arch {bundle.manifest.arch!r} "
            f"(missing {missing[:3]}, unexpected {extra[:3]}): it was trained for another version of "
            "that network; retrain it with `car train`, or use its ONNX files only (car drive, "
            "car eval --runtime onnx)"
        )
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise BundleError(
                f"{bundle.path_of('weights')}: {name} has shape {tuple(state[name].shape)}, arch "
                f"{bundle.manifest.arch!r} needs {tuple(tensor.shape)}: it was trained for another "
                "version of that network; retrain it with `car train`, or use its ONNX files only"
            )
    network.load_state_dict(state)
    return network.to(device).eval()


class GoStopOutputs(nn.Module):
    """A bundle's network followed by the (GO, STOP) selection `vision.detector.GoStop` makes, in torch.

    For explanation code that reads `[:, STOP]`: with an imported network (JetBot: labels blocked, free) the
    stop label's output is not column 1. A (GO, STOP) network passes through unchanged; otherwise the
    selection is a column pick (and 1 − P(STOP) for more than two labels), both linear."""

    def __init__(self, network: nn.Module, n_labels: int, stop_index: int) -> None:
        super().__init__()
        self.network = network
        self.n_labels = n_labels
        self.stop_index = stop_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.network(x)
        if self.n_labels == 2 and self.stop_index == 1:
            return probs
        s = self.stop_index
        stop = probs[:, s : s + 1]
        go = probs[:, 1 - s : 2 - s] if self.n_labels == 2 else 1.0 - stop
        return torch.cat([go, stop], dim=1)


def load_go_stop_network(bundle: ModelBundle, device: str = "cpu") -> nn.Module:
    """`load_torch_network` with (GO, STOP) outputs whatever the bundle's labels (see `GoStopOutputs`).

    A (GO, STOP) network is returned itself, unwrapped (DeepSHAP's chain engine walks it as before)."""
    m = bundle.manifest
    network = load_torch_network(bundle, device)
    if len(m.labels) == 2 and m.stop_index == 1:
        return network
    return GoStopOutputs(network, len(m.labels), m.stop_index).eval()


class TorchDetector:
    """Eager torch inference with the same contract as `vision.detector.OnnxDetector`."""

    def __init__(self, bundle: ModelBundle, threads: int = 1, device: str = "cpu") -> None:
        self.bundle = bundle
        self.threads = threads
        self.input_size = bundle.manifest.preprocessing.input_size
        self.device = device
        self.network = load_torch_network(bundle, device)
        self.n_labels = len(bundle.manifest.labels)
        self.go_stop = GoStop.of(bundle.manifest)

    def label_probs(self, batch: np.ndarray) -> np.ndarray:
        """N×K: one probability per manifest label."""
        x = check_batch(batch, self.input_size)
        if torch.get_num_threads() != self.threads:  # process-wide in torch; set only when it differs
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            out = self.network(torch.from_numpy(x).to(self.device)).cpu().numpy()
        return check_probs(out, x.shape[0], f"{self.bundle.root} (torch)", self.n_labels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.go_stop(self.label_probs(batch))
