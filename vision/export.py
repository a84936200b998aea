"""Turn a torch network into a model bundle: weights, ONNX (parity-checked), optional INT8, manifest.

`build_bundle` is the one way bundles are made (by `car train`, `car export` and tests); it exports even an
untrained network in a few seconds, so other parts' tests can make a real bundle quickly:

    from vision.export import build_bundle
    from vision.networks import build_network
    bundle = build_bundle(build_network("edge"), "edge", tmp_path / "tiny")

The ONNX graph is exported from a *graph order* of the network (`GRAPH_ORDERS`): an exact rewrite of the
published network that onnxruntime runs faster. Every order is parity-checked against the torch network in
its published order on every export (max |Δprob| ≤ 1e-5). The torch weights, training and DeepSHAP keep the
published order; only the ONNX graph differs. The order is recorded in the ONNX file's metadata
(`gostop.graph_order`).

- "relu-before-pool" swaps every published MaxPool → ReLU pair into ReLU → MaxPool. The two commute exactly
  (ReLU is monotonic, so max(relu(x)) = relu(max(x)), bit for bit). The swap lets onnxruntime fuse each ReLU
  into its convolution (and, in INT8 graphs, fold it into the quantised convolution).
- "winograd" (the default) is "relu-before-pool" plus, for stages with at least 32 input channels, the
  Conv3×3 → MaxPool → ReLU triple computed by Winograd F(4×4, 3×3) with the pooling folded in (see
  `vision.winograd`): 36 multiplications per 4×4 output block and channel pair instead of 144. Exact up
  to float rounding; on the bench machine it takes `seed`'s 32→64 stage from ~2.9 to ~2.0 ms and its
  INT8 frame from 9.6 to 8.5-8.9 ms (1 thread).
- "as-trained" exports the published order unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vision.bundle import (
    BundleManifest,
    BundleMetrics,
    ModelBundle,
    TrainingDataSummary,
    file_entry,
    load_bundle,
    now_iso,
    runtime_versions,
    with_files,
    write_manifest,
)
from vision.detector import OnnxDetector, stop_decisions
from vision.errors import VisionError
from vision.labels import LABEL_NAMES
from vision.preprocess import Preprocessing, to_network_input
from vision.quantize import DEFAULT_SCOPE

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
WEIGHTS_FILE = "weights.pt"
OPSET = 17
PARITY_TOLERANCE = 1e-5
MAX_CALIBRATION_FRAMES = 256
INPUT_NAME = "input"
OUTPUT_NAME = "probs"


class ExportError(VisionError, RuntimeError):
    """Export failed a check (parity, ONNX validity); the message says which and by how much."""


GRAPH_ORDER_KEY = "gostop.graph_order"


def as_trained(network: nn.Module, input_size: int) -> nn.Module:
    """The network exactly as published and trained (Conv → MaxPool → ReLU)."""
    return network


def relu_before_pool(network: nn.Module) -> nn.Module:
    """A copy of `network` in which every `MaxPool2d` directly followed by a `ReLU` in an `nn.Sequential`
    runs after it instead. Same weights (and state_dict keys: neither module has parameters), identical
    outputs: max-pooling and ReLU commute exactly. The caller's network is left as it is.
    """
    twin = copy.deepcopy(network)
    for module in twin.modules():
        if isinstance(module, nn.Sequential):
            _swap_pool_relu_pairs(module)
    return twin


def _swap_pool_relu_pairs(sequence: nn.Sequential) -> None:
    children = list(sequence)
    i = 0
    while i < len(children) - 1:
        if isinstance(children[i], nn.MaxPool2d) and isinstance(children[i + 1], nn.ReLU):
            sequence[i], sequence[i + 1] = children[i + 1], children[i]
            i += 2
        else:
            i += 1


def winograd(network: nn.Module, input_size: int) -> nn.Module:
    """`relu_before_pool` of `vision.winograd.winograd_twin`: wide 3×3 stages as Winograd F(4×4, 3×3)."""
    from vision.winograd import winograd_twin

    return relu_before_pool(winograd_twin(network, input_size))


GraphOrder = Callable[[nn.Module, int], nn.Module]
"""(network, input side) -> the module to trace; it must compute what the network computes."""

GRAPH_ORDERS: dict[str, GraphOrder] = {
    "winograd": winograd,
    "relu-before-pool": lambda network, _input_size: relu_before_pool(network),
    "as-trained": as_trained,
}
DEFAULT_GRAPH_ORDER = "winograd"


def graph_order_twin(network: nn.Module, graph_order: str, input_size: int) -> nn.Module:
    """The module to trace for the ONNX graph, in the named graph order (see `GRAPH_ORDERS`)."""
    try:
        rewrite = GRAPH_ORDERS[graph_order]
    except KeyError:
        raise ExportError(f"graph order {graph_order!r}: choose one of {sorted(GRAPH_ORDERS)}") from None
    return rewrite(network, input_size)


@dataclass(frozen=True, slots=True)
class OutputHead:
    """What a network's outputs mean: the manifest's labels, stop label and output kind."""

    labels: tuple[str, ...] = LABEL_NAMES
    stop_label: str = "STOP"
    output: str = "sigmoid"

    @classmethod
    def of(cls, manifest: BundleManifest) -> OutputHead:
        return cls(manifest.labels, manifest.stop_label, manifest.output)


@dataclass(frozen=True, slots=True)
class LabelledFrames:
    """Real frames at the network's input size (RGB uint8 N×S×S×3), labels optional (0 GO, 1 STOP)."""

    images: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"frames must be RGB uint8 N×S×S×3, got {self.images.dtype} {self.images.shape}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.labels)} labels for {len(self.images)} frames")

    def __len__(self) -> int:
        return len(self.images)

    def head(self, n: int) -> LabelledFrames:
        return LabelledFrames(self.images[:n], None if self.labels is None else self.labels[:n])

    def batches(self, prep: Preprocessing, size: int = 32) -> Iterator[np.ndarray]:
        for i in range(0, len(self.images), size):
            yield to_network_input(self.images[i : i + size], prep)


def load_labelled_frames(
    data: str | Path, size: int, limit: int | None = None, seed: int = 0, progress: bool = False
) -> LabelledFrames:
    """Frames of a folder at the network's input size; with `limit`, a seeded random subset of that size
    (`vision.datasets.seeded_subset`, the rule `car train --limit` uses)."""
    from vision.datasets import load_dataset, load_images, scan_folder, seeded_subset

    if limit is None:
        dataset = load_dataset(data, size=size, progress=progress)
        return LabelledFrames(dataset.images, dataset.labels)
    every = scan_folder(data).items
    items = tuple(every[int(i)] for i in seeded_subset(len(every), limit, seed))
    labels = np.fromiter((item.label for item in items), dtype=np.int64, count=len(items))
    return LabelledFrames(load_images(items, size), labels)


def stand_in_frames(prep: Preprocessing, n: int = 8, seed: int = 0) -> LabelledFrames:
    """Deterministic random images, for parity checks when no real frames are given."""
    rng = np.random.default_rng(seed)
    side = prep.input_size
    return LabelledFrames(rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8))


def save_weights(network: nn.Module, path: Path) -> Path:
    """The state_dict only (tensors, no code): read back with `torch.load(..., weights_only=True)`."""
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    torch.save(state, path)
    return path


def export_onnx(
    network: nn.Module, path: Path, input_size: int, graph_order: str = DEFAULT_GRAPH_ORDER
) -> Path:
    """A single-file ONNX graph (opset 17) with a dynamic batch dimension, checked by `onnx.checker`.

    The graph is traced from `network` in `graph_order` (recorded in the file's metadata); callers check
    parity against `network` itself.
    """
    import onnx

    network = graph_order_twin(network.eval().cpu(), graph_order, input_size).eval()
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings(), _export_errors(path, input_size):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            dynamo=False,
            external_data=False,
        )
    _record_graph_order(path, graph_order, _float_only_prefixes(network))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path}: exported graph fails onnx.checker ({exc})") from None
    return path


@contextlib.contextmanager
def _export_errors(path: Path, input_size: int) -> Iterator[None]:
    """torch's exporter failing (an operator it cannot write at this input size) as one ExportError line."""
    try:
        yield
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(
            f"{path}: torch cannot export this network to ONNX at input side {input_size} ({first[:200]}); "
            "try --size 224"
        ) from None


def _float_only_prefixes(traced: nn.Module) -> list[str]:
    from vision.winograd import onnx_scope_prefixes

    return onnx_scope_prefixes(traced)


def _record_graph_order(path: Path, graph_order: str, float_only: list[str]) -> None:
    """The graph order, and the node-name prefixes the INT8 quantiser must leave float, as metadata."""
    import onnx

    from vision.quantize import FLOAT_NODES_KEY

    model = onnx.load(str(path))
    props = {GRAPH_ORDER_KEY: graph_order}
    if float_only:
        props[FLOAT_NODES_KEY] = ";".join(float_only)
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))


def onnx_graph_order(path: Path) -> str:
    """The graph order an ONNX file was exported in ("" for files exported before it was recorded)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == GRAPH_ORDER_KEY), "")


def torch_probs(network: nn.Module, frames: LabelledFrames, prep: Preprocessing) -> np.ndarray:
    network = network.eval()
    outs: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in frames.batches(prep):
            outs.append(network(torch.from_numpy(batch)).numpy())
    return np.concatenate(outs).astype(np.float32)


def onnx_probs(detector: OnnxDetector, frames: LabelledFrames, prep: Preprocessing) -> np.ndarray:
    """(GO, STOP) probabilities, N×2."""
    return np.concatenate([detector.predict(batch) for batch in frames.batches(prep)])


def onnx_label_probs(detector: OnnxDetector, frames: LabelledFrames, prep: Preprocessing) -> np.ndarray:
    """One probability per label, N×K (what parity compares with the torch network's outputs)."""
    return np.concatenate([detector.label_probs(batch) for batch in frames.batches(prep)])


def accuracy(probs: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean(stop_decisions(probs, threshold) == labels))


def _check_parity(reference: np.ndarray, candidate: np.ndarray, path: Path, n: int) -> float:
    worst = float(np.max(np.abs(reference - candidate)))
    if not worst <= PARITY_TOLERANCE:
        raise ExportError(
            f"{path}: onnxruntime and torch disagree by max |Δprob| = {worst:.2e} on {n} frames "
            f"(allowed {PARITY_TOLERANCE:.0e}); the export is not faithful, do not ship it"
        )
    return worst


def _int8_metrics(
    staged: ModelBundle, frames: LabelledFrames, fp32: np.ndarray, threshold: float, threads: int
) -> BundleMetrics:
    prep = staged.manifest.preprocessing
    int8 = onnx_probs(OnnxDetector(staged, "int8", threads), frames, prep)
    metrics = replace(
        staged.manifest.metrics,
        int8_max_abs_prob_diff=float(np.max(np.abs(int8 - fp32))),
        int8_frames=len(frames),
    )
    if frames.labels is not None:
        fp32_acc = accuracy(fp32, frames.labels, threshold)
        int8_acc = accuracy(int8, frames.labels, threshold)
        metrics = replace(
            metrics,
            fp32_accuracy_calib=fp32_acc,
            int8_accuracy_calib=int8_acc,
            int8_accuracy_delta=int8_acc - fp32_acc,
        )
    return metrics


def build_bundle(
    network: nn.Module,
    arch: str,
    out_dir: str | Path,
    calib: LabelledFrames | None = None,
    *,
    int8: bool = False,
    name: str | None = None,
    prep: Preprocessing | None = None,
    threshold: float = 0.5,
    metrics: BundleMetrics | None = None,
    data: TrainingDataSummary | None = None,
    threads: int = 1,
    int8_scope: str = DEFAULT_SCOPE,
    graph_order: str | None = None,
    head: OutputHead | None = None,
) -> ModelBundle:
    """Export `network` into a complete bundle folder at `out_dir` (replacing one that is there).

    `calib` frames check torch↔onnxruntime parity (max |Δprob| ≤ 1e-5, else ExportError) and, with
    `int8`, calibrate the INT8 model; with labels, the INT8 accuracy change on them goes into the manifest.
    Without `calib`, parity is checked on 8 deterministic random images and INT8 is not possible.
    The bundle is assembled in a temporary folder beside `out_dir` and moved into place only when
    every check passed, so a failed export never leaves a half-written bundle behind.
    `graph_order` picks the ONNX graph's operator order (see `GRAPH_ORDERS`; default: the architecture's);
    weights are saved as given. `head` names the network's outputs (default: GO, STOP, sigmoid).
    """
    from vision.architectures import arch_spec
    from vision.quantize import quantize_int8

    out = Path(out_dir)
    prep = prep or Preprocessing()
    head = head or OutputHead()
    try:
        graph_order = graph_order or arch_spec(arch).graph_order
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if int8 and calib is None:
        raise ExportError("INT8 needs real calibration frames: pass --calib DATA (a folder of frames)")
    if graph_order not in GRAPH_ORDERS:
        raise ExportError(f"graph order {graph_order!r}: choose one of {sorted(GRAPH_ORDERS)}")
    parity_frames = calib.head(MAX_CALIBRATION_FRAMES) if calib is not None else stand_in_frames(prep)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a bundle is shared, read-only data
    try:
        network = network.eval().cpu()
        save_weights(network, staging / WEIGHTS_FILE)
        export_onnx(network, staging / ONNX_FILE, prep.input_size, graph_order)
        manifest = BundleManifest(
            name=name or out.name,
            arch=arch,
            preprocessing=prep,
            files={"onnx": file_entry(staging, ONNX_FILE), "weights": file_entry(staging, WEIGHTS_FILE)},
            labels=head.labels,
            stop_label=head.stop_label,
            output=head.output,
            threshold=threshold,
            metrics=metrics or BundleMetrics(),
            data=data or TrainingDataSummary(),
            created=now_iso(),
            versions=runtime_versions({"torch": torch.__version__}),
        )
        staged = write_manifest(staging, manifest)
        reference = torch_probs(network, parity_frames, prep)
        fp32 = onnx_label_probs(OnnxDetector(staged, "fp32", threads), parity_frames, prep)
        worst = _check_parity(reference, fp32, staged.path_of("onnx"), len(parity_frames))
        manifest = replace(
            manifest,
            metrics=replace(manifest.metrics, onnx_parity_max_abs=worst, parity_frames=len(parity_frames)),
        )
        if int8 and calib is not None:
            quantize_int8(
                staging / ONNX_FILE, staging / ONNX_INT8_FILE, _float_frames(parity_frames, prep), int8_scope
            )
            manifest = with_files(manifest, onnx_int8=file_entry(staging, ONNX_INT8_FILE))
            staged = write_manifest(staging, manifest)
            measure = calib.head(4 * MAX_CALIBRATION_FRAMES)
            fp32_all = onnx_probs(OnnxDetector(staged, "fp32", threads), measure, prep)
            int8_metrics = _int8_metrics(staged, measure, fp32_all, threshold, threads)
            manifest = replace(manifest, metrics=replace(int8_metrics, int8_scope=int8_scope))
        write_manifest(staging, manifest)
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(out)


def _float_frames(frames: LabelledFrames, prep: Preprocessing) -> np.ndarray:
    return np.concatenate(list(frames.batches(prep)))


def reexport_bundle(
    bundle: ModelBundle,
    calib: LabelledFrames | None,
    int8: bool,
    *,
    threads: int = 1,
    int8_scope: str = DEFAULT_SCOPE,
    graph_order: str | None = None,
) -> ModelBundle:
    """`car export`: rebuild the bundle's ONNX (and INT8) from its torch weights, keeping its other facts."""
    from vision.torch_model import load_torch_network

    network = load_torch_network(bundle)
    m = bundle.manifest
    kept = BundleMetrics(
        val_loss=m.metrics.val_loss,
        val_accuracy=m.metrics.val_accuracy,
        best_epoch=m.metrics.best_epoch,
        epochs=m.metrics.epochs,
    )
    return build_bundle(
        network,
        m.arch,
        bundle.root,
        calib,
        int8=int8,
        name=m.name,
        prep=m.preprocessing,
        threshold=m.threshold,
        metrics=kept,
        data=m.data,
        threads=threads,
        int8_scope=int8_scope,
        graph_order=graph_order,
        head=OutputHead.of(m),
    )
