"""The explainer seam: what every attribution method takes and gives back.

An explainer is built once per network and background (`ExplainContext`) and then asked for the
attributions of batches of network inputs. Every method returns the same `Explanation`: values shaped like
the input, one map per explained output, so the store, the metrics, the faithfulness check and the report
never ask which method made them. Methods whose natural map is per pixel (Grad-CAM, sliding-window
occlusion) spread it evenly over the colour channels, so summing over channels gives the map back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from explain.errors import ExplainError

if TYPE_CHECKING:
    from torch import nn

# network inputs (N, C, H, W) float32 → outputs (N, K) float64
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Attributions of some frames for some outputs.

    `values` float32 (frames, outputs, C, H, W); `outputs` the explained output indices; `expected` the
    reference output per explained output (the mean over the method's references); `model_output` the
    network's output per frame and explained output.
    """

    values: np.ndarray
    outputs: tuple[int, ...]
    expected: np.ndarray
    model_output: np.ndarray

    def of_output(self, output: int) -> np.ndarray:
        """(frames, C, H, W) values for one output index."""
        return self.values[:, self.outputs.index(output)]


@dataclass(frozen=True)
class ExplainContext:
    """Everything a method may need. `background`: network inputs (N, C, H, W), the references.
    `onnx`: the ONNX file that drove (fp32 or INT8); black-box methods run it, None means they run the
    torch `network` (the sanity check's randomised copies have no ONNX file). `onnx_outputs` maps that
    file's raw outputs (N, labels) to the torch `network`'s columns when they differ (e.g. a many-label
    bundle explained through a (GO, STOP) view); None: the same columns."""

    network: nn.Module
    background: np.ndarray
    device: str = "cpu"
    onnx: Path | None = None
    onnx_outputs: Callable[[np.ndarray], np.ndarray] | None = None

    def with_network(self, network: nn.Module) -> ExplainContext:
        """The same references for another network (the sanity check's randomised copies)."""
        return replace(self, network=network, onnx=None, onnx_outputs=None)

    def with_background(self, count: int) -> ExplainContext:
        return replace(self, background=self.background[:count])


class Explainer(ABC):
    """One attribution method for one network and background."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for the report and `--help`
    frames_per_pass: int = 4  # how many frames `explain` takes at once (a memory knob, never the values)

    @abstractmethod
    def explain(self, frames: np.ndarray, outputs: Sequence[int]) -> Explanation:
        """Attributions of `frames` (N, C, H, W), float32 network inputs, for the given output indices."""


def check_outputs(outputs: Sequence[int], num_outputs: int) -> tuple[int, ...]:
    outs = tuple(int(o) for o in outputs)
    if not outs or min(outs) < 0 or max(outs) >= num_outputs:
        raise ExplainError(f"outputs {outs} out of range for a network with {num_outputs} outputs")
    return outs


def torch_predict(network: nn.Module, device: str, batch: int = 64) -> Predict:
    """The torch network as a batched `Predict` (inference mode, float64 out)."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for lo in range(0, len(x), batch):
                chunk = torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch], dtype=np.float32))
                outs.append(network(chunk.to(device)).float().cpu().numpy())
        return np.concatenate(outs).astype(np.float64)

    return run


def spread_over_channels(pixel_maps: np.ndarray, channels: int) -> np.ndarray:
    """(N, K, H, W) per-pixel maps → (N, K, C, H, W) values whose channel sum is the map."""
    return np.repeat((pixel_maps / channels)[:, :, None], channels, axis=2).astype(np.float32)
