"""ONNX export: valid single-file graph, dynamic batch, torch↔onnxruntime parity, INT8 with float Sigmoid."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from tests.test_training import coloured_frames, write_folder
from vision.bundle import load_bundle
from vision.detector import OnnxDetector
from vision.export import (
    DEFAULT_GRAPH_ORDER,
    ExportError,
    LabelledFrames,
    _check_parity,
    build_bundle,
    onnx_graph_order,
    relu_before_pool,
    stand_in_frames,
    torch_probs,
)
from vision.networks import ARCHITECTURES, build_network, register
from vision.preprocess import Preprocessing, to_network_input
from vision.quantize import FLOAT_NODES_KEY
from vision.winograd import WinogradConvPoolReLU, phase_major_order, winograd_twin


@pytest.fixture(scope="module")
def calib() -> LabelledFrames:
    images, labels = coloured_frames(24, 7)
    return LabelledFrames(images, labels)


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory, calib: LabelledFrames) -> Path:
    torch.manual_seed(1)
    return build_bundle(
        build_network("edge"), "edge", tmp_path_factory.mktemp("e") / "e8", calib, int8=True
    ).root


def test_onnx_is_valid_single_file_opset_at_most_20_with_dynamic_batch(int8_bundle: Path) -> None:
    bundle = load_bundle(int8_bundle)
    for role in ("onnx", "onnx_int8"):
        model = onnx.load(str(bundle.path_of(role)))
        onnx.checker.check_model(model)
        assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) <= 20
        assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert batch_dim.dim_param and not batch_dim.dim_value
    assert sorted(p.name for p in int8_bundle.iterdir()) == [
        "manifest.json",
        "model.int8.onnx",
        "model.onnx",
        "weights.pt",
    ]
    detector = OnnxDetector(bundle)
    for n in (1, 3):
        assert detector.predict(np.zeros((n, 3, 224, 224), np.float32)).shape == (n, 2)


def test_parity_with_torch_on_real_frames(int8_bundle: Path, tmp_path: Path) -> None:
    """Frames written to JPEG and read back through the dataset loader, as the car's folder source does."""
    from vision.datasets import load_dataset
    from vision.torch_model import load_torch_network

    bundle = load_bundle(int8_bundle)
    frames = load_dataset(write_folder(tmp_path / "real", 8, seed=3))
    prep = bundle.manifest.preprocessing
    reference = torch_probs(load_torch_network(bundle), LabelledFrames(frames.images), prep)
    got = OnnxDetector(bundle).predict(to_network_input(frames.images, prep))
    assert np.max(np.abs(got - reference)) <= 1e-5
    assert bundle.manifest.metrics.parity_frames == 24
    assert bundle.manifest.metrics.onnx_parity_max_abs <= 1e-5


def test_parity_violation_is_an_error() -> None:
    a = np.zeros((4, 2), np.float32)
    assert _check_parity(a, a + 5e-6, Path("m.onnx"), 4) == pytest.approx(5e-6)
    with pytest.raises(ExportError, match=r"max \|Δprob\| = 1\.00e-04 on 4 frames"):
        _check_parity(a, a + 1e-4, Path("m.onnx"), 4)
    with pytest.raises(ExportError, match="disagree"):
        _check_parity(a, a + np.nan, Path("m.onnx"), 4)


def test_int8_keeps_sigmoid_float_and_records_accuracy_change(
    int8_bundle: Path, calib: LabelledFrames
) -> None:
    bundle = load_bundle(int8_bundle)
    model = onnx.load(str(bundle.path_of("onnx_int8")))
    producers = {out: node for node in model.graph.node for out in node.output}
    (sigmoid,) = [n for n in model.graph.node if n.op_type == "Sigmoid"]
    assert producers[sigmoid.input[0]].op_type == "DequantizeLinear"
    assert model.graph.output[0].name in sigmoid.output  # nothing quantised after it
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    m = bundle.manifest.metrics
    assert m.int8_frames == len(calib) and m.int8_scope == "linear"
    assert m.int8_accuracy_delta == pytest.approx(m.int8_accuracy_calib - m.fp32_accuracy_calib)
    prep = Preprocessing()
    x = to_network_input(calib.images[:8], prep)
    fp32 = OnnxDetector(bundle, "fp32").predict(x)
    int8 = OnnxDetector(bundle, "int8").predict(x)
    assert m.int8_max_abs_prob_diff is not None
    assert 0 < np.max(np.abs(int8 - fp32)) <= max(0.05, m.int8_max_abs_prob_diff)


def test_int8_without_frames_fails_before_writing_anything(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--calib"):
        build_bundle(build_network("edge"), "edge", tmp_path / "x", None, int8=True)
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_car_export_rebuilds_onnx_and_int8_from_weights(int8_bundle: Path, tmp_path: Path) -> None:
    from car.commands import export

    copy = Path(shutil.copytree(int8_bundle, tmp_path / "b"))
    before = load_bundle(copy)
    data = write_folder(tmp_path / "calib", 12, seed=9)
    args = argparse.Namespace(
        bundle=copy,
        int8=True,
        calib=data,
        limit=512,
        int8_scope="all",
        graph_order="relu-before-pool",
        json=True,
    )
    assert export.run(args) == 0
    after = load_bundle(copy)
    assert after.manifest.files["weights"] == before.manifest.files["weights"]
    assert after.manifest.metrics.int8_frames == 12 and after.manifest.metrics.parity_frames == 12
    assert after.manifest.name == before.manifest.name
    assert after.manifest.metrics.int8_scope == "all"
    int8_model = onnx.load(str(after.path_of("onnx_int8")))
    producers = {out: n.op_type for n in int8_model.graph.node for out in n.output}
    convs = [n for n in int8_model.graph.node if n.op_type == "Conv"]
    assert convs and all(producers.get(c.input[1]) == "DequantizeLinear" for c in convs)


def test_car_export_int8_needs_calib(int8_bundle: Path) -> None:
    from car.commands import export
    from vision.errors import VisionError

    with pytest.raises(VisionError, match="--calib"):
        export.run(
            argparse.Namespace(
                bundle=int8_bundle,
                int8=True,
                calib=None,
                limit=512,
                int8_scope="linear",
                graph_order="as-trained",
                json=False,
            )
        )


def _op_sequence(path: Path) -> list[str]:
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node if n.op_type in ("Conv", "Relu", "MaxPool")]
    return ops[:-1] if ops[-1] == "Relu" else ops  # drop the classifier's ReLU


@pytest.mark.parametrize("arch", ["seed", "edge"])
def test_relu_before_pool_twin_is_bit_exact_and_leaves_the_network_alone(arch: str) -> None:
    torch.manual_seed(3)
    network = build_network(arch).eval()
    published = [type(m).__name__ for m in network.features]
    twin = relu_before_pool(network).eval()
    assert [type(m).__name__ for m in network.features] == published  # the caller's order is kept
    assert published[:3] == ["Conv2d", "MaxPool2d", "ReLU"]
    assert [type(m).__name__ for m in twin.features][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert twin.state_dict().keys() == network.state_dict().keys()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        assert torch.equal(network.features(x), twin.features(x))  # exact, not merely close
        assert torch.equal(network(x), twin(x))


def test_exported_graph_order_is_recorded_and_parity_checked_against_the_published_network(
    int8_bundle: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(int8_bundle)
    assert onnx_graph_order(bundle.path_of("onnx")) == DEFAULT_GRAPH_ORDER == "winograd"
    assert bundle.manifest.metrics.onnx_parity_max_abs <= 1e-5
    torch.manual_seed(1)
    network = build_network("edge")
    old = build_bundle(network, "edge", tmp_path / "old", graph_order="as-trained")
    assert onnx_graph_order(old.path_of("onnx")) == "as-trained"
    stages = sum(isinstance(m, nn.Conv2d) for m in network.features)
    assert _op_sequence(old.path_of("onnx")) == ["Conv", "MaxPool", "Relu"] * stages
    new = build_bundle(network, "edge", tmp_path / "new", graph_order="relu-before-pool")
    assert _op_sequence(new.path_of("onnx")) == ["Conv", "Relu", "MaxPool"] * stages
    x = to_network_input(stand_in_frames(Preprocessing(), n=4, seed=5).images, Preprocessing())
    old_probs = OnnxDetector(old).predict(x)
    assert np.max(np.abs(OnnxDetector(new).predict(x) - old_probs)) <= 1e-6
    assert new.manifest.files["weights"].sha256 == old.manifest.files["weights"].sha256


def test_unknown_graph_order_is_an_error_before_writing_anything(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="choose one of"):
        build_bundle(build_network("edge"), "edge", tmp_path / "x", graph_order="upside-down")
    assert list(tmp_path.iterdir()) == []


# Winograd graph order ---------------------------------------------------------------------------------------


class StagedNet(nn.Module):
    """A small network in the project's shape (features, classifier) with two wide 3×3 stages."""

    def __init__(self, widths: tuple[int, ...] = (3, 32, 32, 40), side: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        out_side = side >> (len(widths) - 1)
        self.classifier = nn.Sequential(
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(widths[-1] * out_side * out_side, 6),
            nn.ReLU(),
            nn.Linear(6, 2),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_pool_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(nn.functional.max_pool2d(conv(x), 2))


def _phase_major(image: torch.Tensor) -> torch.Tensor:
    n, c, side, _ = image.shape
    return image.reshape(n, -1)[:, phase_major_order(c, side)]


@pytest.mark.parametrize("phase_input", [False, True])
@pytest.mark.parametrize("phase_output", [False, True])
def test_winograd_stage_computes_conv_pool_relu(phase_input: bool, phase_output: bool) -> None:
    torch.manual_seed(5)
    conv = nn.Conv2d(32, 24, 3, padding=1)
    x = torch.randn(2, 32, 16, 16)
    stage = WinogradConvPoolReLU(conv, 16, phase_input=phase_input, phase_output=phase_output)
    with torch.inference_mode():
        reference = _conv_pool_relu(conv, x)
        got = stage(_phase_major(x) if phase_input else x)
    expected = _phase_major(reference) if phase_output else reference
    assert got.shape == expected.shape
    assert torch.max(torch.abs(got - expected)) <= 1e-5 * float(reference.abs().max())
    assert float(reference.abs().max()) > 0.1 and torch.count_nonzero(reference == 0) > 0  # ReLU did cut


def test_winograd_stage_rejects_a_side_it_cannot_tile() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        WinogradConvPoolReLU(nn.Conv2d(32, 8, 3, padding=1), 14, phase_input=False, phase_output=True)


def test_winograd_twin_chains_wide_stages_and_permutes_the_head() -> None:
    torch.manual_seed(6)
    network = StagedNet().eval()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    twin = winograd_twin(network, 32).eval()
    kinds = [type(m).__name__ for m in twin.features]
    assert kinds == ["Conv2d", "MaxPool2d", "ReLU", "WinogradConvPoolReLU", "WinogradConvPoolReLU"]
    first, second = twin.features[3], twin.features[4]
    assert not first.phase_input and first.phase_output and second.phase_input  # the RGB stage stays direct
    assert not torch.equal(twin.classifier[2].weight, network.classifier[2].weight)  # type: ignore[arg-type]
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        assert torch.max(torch.abs(twin(x) - network(x))) <= 1e-6
    assert all(torch.equal(v, network.state_dict()[k]) for k, v in before.items())  # caller's untouched


def test_winograd_twin_rewrites_only_stages_that_can_stay_phase_major() -> None:
    torch.manual_seed(7)
    narrow_last = StagedNet(widths=(3, 32, 32, 8), side=32)  # 32→8: still ≥ 32 input channels
    assert sum(isinstance(m, WinogradConvPoolReLU) for m in winograd_twin(narrow_last, 32).features) == 2
    narrow_in = StagedNet(widths=(3, 16, 16), side=32)  # fewer than 32 input channels: no rewrite
    assert not any(isinstance(m, WinogradConvPoolReLU) for m in winograd_twin(narrow_in, 32).features)
    odd_side = StagedNet(widths=(3, 32, 32, 32), side=24)  # last stage input 6×6: cannot tile by 4
    twin = winograd_twin(odd_side, 24)
    assert not any(isinstance(m, WinogradConvPoolReLU) for m in twin.features)  # nor the stage before it


def test_seed_winograd_twin_matches_the_published_network() -> None:
    torch.manual_seed(8)
    network = build_network("seed").eval()
    twin = winograd_twin(network, 224).eval()
    assert [type(m).__name__ for m in twin.features][-2:] == ["ReLU", "WinogradConvPoolReLU"]
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.max(torch.abs(twin(x) - network(x))) <= 1e-6


@contextlib.contextmanager
def registered(name: str, factory: Callable[[], nn.Module]) -> Iterator[None]:
    register(name)(factory)
    try:
        yield
    finally:
        ARCHITECTURES.pop(name, None)


def test_winograd_bundle_is_parity_checked_and_its_int8_quantises_only_trained_layers(tmp_path: Path) -> None:
    torch.manual_seed(9)
    prep = Preprocessing(input_size=32)
    rng = np.random.default_rng(10)
    calib = LabelledFrames(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), np.arange(16) % 2)
    with registered("staged", StagedNet):  # a manifest must name a registered architecture
        bundle = build_bundle(StagedNet(), "staged", tmp_path / "w", calib, int8=True, prep=prep)
    assert onnx_graph_order(bundle.path_of("onnx")) == "winograd"
    assert bundle.manifest.metrics.onnx_parity_max_abs <= 1e-5
    model = onnx.load(str(bundle.path_of("onnx")))
    marked = next(p.value for p in model.metadata_props if p.key == FLOAT_NODES_KEY)
    assert marked == "/features/features.3/;/features/features.4/"
    int8 = onnx.load(str(bundle.path_of("onnx_int8")))
    producers = {out: node.op_type for node in int8.graph.node for out in node.output}
    winograd_nodes = [n for n in int8.graph.node if n.name.startswith(tuple(marked.split(";")))]
    assert sum(n.op_type == "MatMul" for n in winograd_nodes) == 6  # 2 stages × (product + 2 transforms)
    assert all(producers.get(i) != "DequantizeLinear" for n in winograd_nodes for i in n.input)
    gemms = [n for n in int8.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 2 and all(producers[g.input[1]] == "DequantizeLinear" for g in gemms)
    x = to_network_input(calib.images[:4], prep)
    fp32 = OnnxDetector(bundle, "fp32").predict(x)
    assert 0 < np.max(np.abs(OnnxDetector(bundle, "int8").predict(x) - fp32)) <= 0.05
