"""The DeepSHAP engine on graph networks (torch.fx): torchvision ResNet18, MobileNetV3-small and VGG11
with random weights, against real shap run on an equivalent rewritten copy of each network
(explain/deepshap_reference.py) with the engine's two additive rules (overlapping max-pool windows summed,
the Shapley split of a product) registered into it, and against stock shap where those rules differ."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from explain.deepshap import DeepShapEngine
from explain.deepshap_reference import captum_values, shap_values
from explain.errors import ExplainError

SIZE = 32  # small inputs keep shap quick; every layer of the three networks still runs


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These networks run hundreds of tiny operations; on a busy machine two OpenMP threads spend most of
    their time waiting for each other (MobileNetV3's test: minutes at two threads, seconds at one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def lively(model: nn.Module, size: int = SIZE, seed: int = 0) -> nn.Module:
    """Random weights with BatchNorm statistics measured on random inputs (as after training), so that the
    outputs depend on the input (torchvision's initialisation leaves MobileNet's output nearly constant)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight)
                assert m.bias is not None
                m.bias.uniform_(-0.1, 0.1)
        model.train()
        model(torch.randn(8, 3, size, size))
    return model.eval()


def inputs(seed: int, n: int, size: int = SIZE) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (n, 3, size, size)).astype(np.float32))


def own_additivity(
    model: nn.Module, values: np.ndarray, background: torch.Tensor, frames: torch.Tensor
) -> float:
    with torch.no_grad():
        out, expected = model(frames).numpy(), model(background).mean(0).numpy()
    total = values.reshape(values.shape[0], values.shape[1], -1).astype(np.float64).sum(-1)
    return float(np.abs(total + expected[None] - out).max())


# name → whether stock shap's rules add up on it (see the README, "Exact and fast"): its max-pool rule keeps
# one share where overlapping windows pick the same input (ResNet's stem pools 3×3 with stride 2) and a
# product of two input-dependent tensors (MobileNet's squeeze-excitation) gets the plain gradient; VGG has
# neither, so there stock shap, fixed shap and the engine agree.
NETWORKS = {"resnet18": False, "mobilenet_v3_small": False, "vgg11": True}


def torchvision_network(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return lively(getattr(torchvision.models, name)(weights=None, num_classes=2), seed=seed)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_torchvision_networks_equal_shap_on_the_rewritten_copy_and_add_up(name: str) -> None:
    """In float64: in float32 both sides' values carry rounding that shap's Δout/Δin divisions amplify where
    a frame's and a reference's activations nearly coincide, and the engine's frame runs forward alone while
    shap's runs in a batch of 2N rows (shap against itself with the background permuted differs as much;
    see the README). In float64 that noise is gone and what is compared is the rules."""
    model = torchvision_network(name).double()
    background, frames = inputs(1, 2).double(), inputs(2, 1).double()
    reference = shap_values(model, background, frames)
    engine = DeepShapEngine(model, background)
    assert not engine.is_chain
    result = engine.explain(frames.numpy())
    scale = float(np.abs(reference).max())
    assert scale > 1e-3  # the comparison is not between two near-zero maps
    assert np.abs(result.values - reference).max() <= 1e-5 * max(1.0, scale)
    assert float(result.additivity_error().max()) <= 1e-4
    assert own_additivity(model, reference, background, frames) <= 1e-4
    # stock shap: the same values where its rules add up, far from additive where they do not
    stock = shap_values(model, background, frames, fixed_rules=False)
    if NETWORKS[name]:
        assert np.abs(result.values - stock).max() <= 1e-5 * max(1.0, scale)
    else:
        assert own_additivity(model, stock, background, frames) > 0.1


class Knotty(nn.Module):
    """Every graph feature at once: one in-place ReLU module called three times, BatchNorm, a max-pool, a
    concatenation, a squeeze-excitation product, functional SiLU and ReLU, an in-place residual addition,
    arithmetic with constants (a learned per-channel scale), a reshape and a functional softmax output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.a = nn.Conv2d(6, 4, 3, padding=1)
        self.b = nn.Conv2d(6, 4, 1)
        self.squeeze = nn.Conv2d(8, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.mix = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.Hardswish()
        self.head = nn.Linear(8 * 4 * 4, 3)
        self.gamma = nn.Parameter(torch.linspace(0.5, 1.5, 8).view(8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.stem(x))))
        y = torch.cat([self.relu(self.a(x)), self.b(x)], 1)
        y = y * self.gate(self.squeeze(F.adaptive_avg_pool2d(y, 1)))
        z = F.silu(self.mix(y))
        z += self.relu(y)
        z = F.avg_pool2d((self.act(z) - 0.1) * self.gamma / 2.0, 2)
        return torch.softmax(self.head(z.view(z.size(0), -1)), dim=1)


def knotty(seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return lively(Knotty(), size=16, seed=seed)


def test_reused_in_place_modules_cat_products_and_softmax_equal_shap() -> None:
    model = knotty().double()
    background, frames = inputs(4, 6, 16).double(), inputs(5, 3, 16).double()
    reference = shap_values(model, background, frames)
    engine = DeepShapEngine(model, background)
    result = engine.explain(frames.numpy())
    scale = float(np.abs(reference).max())
    assert scale > 1e-3
    assert np.abs(result.values - reference).max() <= 1e-6 * scale
    assert result.additivity_error().max() <= 1e-6
    assert own_additivity(model, reference, background, frames) <= 1e-6
    # its max-pool windows do not overlap; the squeeze-excitation product alone takes stock shap off
    stock = shap_values(model, background, frames, fixed_rules=False)
    assert own_additivity(model, stock, background, frames) > 1e-5
    relu = model.relu
    assert (
        isinstance(relu, nn.ReLU) and relu.inplace
    )  # the caller's network is left as it was (the engine runs an out-of-place copy)


def test_chain_networks_keep_the_fast_path() -> None:
    from vision.networks import build_network

    for arch in ("seed", "edge"):
        engine = DeepShapEngine(build_network(arch).eval(), inputs(6, 1, 224))
        assert engine.is_chain and engine.layers


def test_untraceable_networks_are_refused_with_the_reason() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.fc(x.flatten(1))
            return y if bool(y.sum() > 0) else -y

    with pytest.raises(ExplainError, match=r"torch\.fx"):
        DeepShapEngine(Branchy().eval(), torch.zeros(2, 3, 2, 2))


def test_captum_deepliftshap_agrees_with_stock_shap_once_adjacent_nonlinearities_are_separated() -> None:
    """The cross-check with a second implementation: Captum 0.9.0's DeepLiftShap on ResNet18 (ReLU → MaxPool
    in the stem, residual additions) gives stock shap's values once a Clone module separates adjacent
    nonlinear modules; without it, its hooks fire in the wrong order (Captum issue #1104) and it does not.
    Captum unpools max-pooling the way stock shap does (`max_unpool2d`, one share kept where the stem's
    overlapping windows collide), so both stay as far from additive, and from the engine's summed rule."""
    model = torchvision_network("resnet18").double()
    background, frames = inputs(1, 2).double(), inputs(2, 1).double()
    stock = shap_values(model, background, frames, fixed_rules=False)
    scale = float(np.abs(stock).max())
    captum = captum_values(model, background, frames)
    assert np.abs(captum - stock).max() <= 1e-5 * scale
    assert np.abs(captum_values(model, background, frames, clones=False) - stock).max() > 1e-2 * scale
    ours = DeepShapEngine(model, background).explain(frames.numpy()).values
    assert np.abs(captum - ours).max() > 1e-2 * scale
    assert own_additivity(model, captum, background, frames) > 0.1


class Overlapping(nn.Module):
    """A chain with ResNet's stem pool (3×3, stride 2, padding 1: neighbouring windows share a row or
    column, and often pick the same input)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_overlapping_max_pool_windows_add_up_on_the_chain_path() -> None:
    torch.manual_seed(7)
    model = Overlapping().double().eval()
    background, frames = inputs(8, 5, 16).double(), inputs(9, 2, 16).double()
    engine = DeepShapEngine(model, background)
    assert engine.is_chain and not engine.layers[2].rule.simple  # type: ignore[attr-defined]
    result = engine.explain(frames.numpy())
    reference = shap_values(model, background, frames)
    scale = float(np.abs(reference).max())
    assert np.abs(result.values - reference).max() <= 1e-6 * scale
    assert result.additivity_error().max() <= 1e-5
    stock = shap_values(model, background, frames, fixed_rules=False)
    assert own_additivity(model, stock, background, frames) > 1e-2


class Products(nn.Module):
    """x · x, a broadcast product of a map and its own channel gate, and a product of two branches."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.gate = nn.Linear(4, 4)
        self.head = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.a(x), torch.tanh(self.b(x))
        square = a * a
        scale = torch.sigmoid(self.gate(a.mean((2, 3)))).view(-1, 4, 1, 1)
        y = torch.mul(square, scale) + a.mul(b)
        return self.head(y.flatten(1))


def test_products_take_the_shapley_split_and_add_up() -> None:
    """Every product of two input-dependent tensors (a square included, a broadcast gate included) gets
    multipliers (b + b′)/2 and (a + a′)/2, in the engine and in the shap reference alike."""
    torch.manual_seed(11)
    model = Products().double().eval()
    background, frames = inputs(12, 4, 8).double(), inputs(13, 2, 8).double()
    result = DeepShapEngine(model, background).explain(frames.numpy())
    reference = shap_values(model, background, frames)
    scale = float(np.abs(reference).max())
    assert np.abs(result.values - reference).max() <= 1e-6 * scale
    assert result.additivity_error().max() <= 1e-5
    assert own_additivity(model, reference, background, frames) <= 1e-10
    stock = shap_values(model, background, frames, fixed_rules=False)
    assert own_additivity(model, stock, background, frames) > 1e-3
