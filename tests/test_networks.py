"""The two networks: seed is the published architecture exactly; both are walkable by DeepSHAP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import fx, nn

from vision.architectures import ARCHITECTURES, OUTPUT_KINDS, names
from vision.networks import EdgeNet, SeedNet, build_network, head_linear, stem_modules


def _layer_types(net: nn.Module) -> list[type[nn.Module]]:
    return [type(m) for m in net.modules() if not isinstance(m, nn.Sequential) and m is not net]


def test_seed_is_the_published_architecture() -> None:
    net = SeedNet()
    assert _layer_types(net) == [
        nn.Conv2d, nn.MaxPool2d, nn.ReLU,
        nn.Conv2d, nn.MaxPool2d, nn.ReLU,
        nn.Conv2d, nn.MaxPool2d, nn.ReLU,
        nn.Dropout, nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.Sigmoid,
    ]  # fmt: skip
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 16, (3, 3)),
        (16, 32, (3, 3)),
        (32, 64, (3, 3)),
    ]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(50176, 500), (500, 2)]
    dropout = next(m for m in net.modules() if isinstance(m, nn.Dropout))
    assert dropout.p == 0.25
    assert sum(p.numel() for p in net.parameters()) == 25_113_086


@pytest.mark.parametrize("arch", names("gostop"))
def test_shap_rules_own_modules_nothing_inplace_no_functional_calls(arch: str) -> None:
    net = build_network(arch)
    leaves = [m for m in net.modules() if not list(m.children())]
    assert len({id(m) for m in leaves}) == len(leaves)  # no layer instance used twice
    assert not any(getattr(m, "inplace", False) for m in leaves)
    graph = fx.symbolic_trace(net).graph
    kinds = {node.op for node in graph.nodes}
    assert kinds <= {"placeholder", "call_module", "output"}, kinds
    assert isinstance(leaves[-1], nn.Sigmoid)


@pytest.mark.parametrize("arch", ["seed", "edge"])
def test_two_sigmoid_outputs_for_a_224_rgb_batch(arch: str) -> None:
    torch.manual_seed(0)
    net = build_network(arch).eval()
    with torch.inference_mode():
        out = net(torch.randn(3, 3, 224, 224))
    assert out.shape == (3, 2) and bool(((out > 0) & (out < 1)).all())


def test_edge_is_small(tmp_path: Path) -> None:
    from vision.export import export_onnx

    net = EdgeNet()
    assert sum(p.numel() for p in net.parameters()) < 400_000
    path = export_onnx(net, tmp_path / "edge.onnx", 224)
    assert path.stat().st_size <= 2 * 1024 * 1024


def test_deepshap_walks_edge_and_attributions_add_up() -> None:
    shap = pytest.importorskip("shap")
    torch.manual_seed(0)
    net = build_network("edge").eval()
    background = torch.randn(1, 3, 224, 224)
    sample = torch.randn(1, 3, 224, 224)
    explainer = shap.DeepExplainer(net, background)
    values = explainer.shap_values(sample, check_additivity=True)
    values = values if isinstance(values, list) else [values[..., i] for i in range(values.shape[-1])]
    assert len(values) == 2 and values[0].shape == (1, 3, 224, 224)


def test_unknown_arch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        build_network("resnet")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_registered_architecture_builds_with_a_head_per_label(arch: str) -> None:
    """Built on the meta device (no memory, no initialisation): vgg16's 134 M weights cost nothing here."""
    spec = ARCHITECTURES[arch]
    n_labels = 2 if spec.fixed_labels else 5
    with torch.device("meta"):
        net = build_network(arch, n_labels, spec.outputs[0])
    head = net.get_submodule(head_linear(net))
    assert isinstance(head, nn.Linear) and head.out_features == n_labels
    assert stem_modules(net)
    leaves = [m for m in net.modules() if not list(m.children())]
    assert isinstance(leaves[-1], nn.Softmax if spec.outputs[0] == "softmax" else nn.Sigmoid)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "alexnet"])
@pytest.mark.parametrize("output", OUTPUT_KINDS)
def test_torchvision_networks_output_probabilities_at_a_small_input(arch: str, output: str) -> None:
    torch.manual_seed(0)
    net = build_network(arch, 3, output).eval()
    with torch.inference_mode():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3) and bool(((out >= 0) & (out <= 1)).all())
    if output == "softmax":
        assert torch.allclose(out.sum(dim=1), torch.ones(2), atol=1e-6)


def test_chain_networks_refuse_other_heads() -> None:
    with pytest.raises(ValueError, match="2 sigmoid outputs"):
        build_network("edge", 3, "sigmoid")
    with pytest.raises(ValueError, match="2 sigmoid outputs"):
        build_network("edge", 2, "softmax")
