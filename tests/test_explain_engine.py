"""The fast DeepSHAP engine against real shap.DeepExplainer on tiny networks: same values, additivity."""

from __future__ import annotations

import numpy as np
import pytest
import shap
import torch
import torch.nn.functional as F
from torch import nn

from explain.deepshap import DeepShapEngine, EngineSettings, read_chain
from explain.errors import ExplainError

TOL = 1e-5


def chain(*layers: nn.Module) -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers[:-3])
            self.classifier = nn.Sequential(*layers[-3:])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x))

    return Net().eval()


def seed_like(seed: int = 0, act: type[nn.Module] = nn.ReLU, pool: nn.Module | None = None) -> nn.Module:
    """SeedNet's layer pattern at 32×32: [Conv, MaxPool, act] × 2, Dropout, Flatten, Linear, act, Linear,
    Sigmoid."""
    torch.manual_seed(seed)
    return chain(
        nn.Conv2d(3, 4, 3, padding=1),
        pool if pool is not None else nn.MaxPool2d(2),
        act(),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.MaxPool2d(2),
        act(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.LazyLinear(12),
        act(),
        nn.Linear(12, 2),
        nn.Sigmoid(),
    )


def published(model: nn.Module, background: torch.Tensor, frames: torch.Tensor) -> np.ndarray:
    """shap's own values, as (frames, outputs, C, H, W)."""
    values = shap.DeepExplainer(model, background).shap_values(frames)
    return np.asarray(values).transpose(0, 4, 1, 2, 3)


def inputs(seed: int, n: int, size: int = 32) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (n, 3, size, size)).astype(np.float32))


def built(model: nn.Module, size: int = 32) -> nn.Module:
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))  # materialise LazyLinear
    return model


@pytest.mark.parametrize(
    "settings",
    [EngineSettings(), EngineSettings(cache_bytes=0, work_bytes=3 * 4 * 4 * 32 * 32, frames_per_pass=2)],
    ids=["cached", "recomputed-in-chunks"],
)
def test_values_equal_shap_and_add_up(settings: EngineSettings) -> None:
    model = built(seed_like(0))
    background, frames = inputs(1, 12), inputs(2, 3)
    reference = published(model, background, frames)
    engine = DeepShapEngine(model, background, settings=settings)
    assert engine.caches_background == (settings.cache_bytes > 0)
    result = engine.explain(frames.numpy())
    assert result.values.shape == reference.shape
    assert np.abs(result.values - reference).max() <= TOL * max(1.0, np.abs(reference).max())
    assert np.abs(reference).max() > 1e-4  # the comparison is not between two zero maps
    assert result.additivity_error().max() < 1e-4
    np.testing.assert_allclose(engine.expected_value, model(background).mean(0).detach().numpy(), atol=1e-6)


def test_one_output_alone_equals_that_output_of_both() -> None:
    model = built(seed_like(3))
    background, frames = inputs(4, 10), inputs(5, 2)
    engine = DeepShapEngine(model, background)
    both = engine.explain(frames.numpy())
    stop = engine.explain(frames.numpy(), outputs=(1,))
    np.testing.assert_allclose(stop.of_output(1), both.of_output(1), atol=1e-7)
    assert stop.values.shape[1] == 1


@pytest.mark.parametrize("act", [nn.Tanh, nn.ELU], ids=["tanh", "elu"])
def test_other_activations_use_the_same_rule_as_shap(act: type[nn.Module]) -> None:
    model = built(seed_like(6, act=act))
    background, frames = inputs(7, 8), inputs(8, 2)
    reference = published(model, background, frames)
    values = DeepShapEngine(model, background).explain(frames.numpy()).values
    assert np.abs(values - reference).max() <= TOL * max(1.0, np.abs(reference).max())


def stem_then_pooled_stage(stem: nn.Conv2d) -> nn.Module:
    """`stem`, MaxPool, ReLU, one more [Conv3×3, MaxPool, ReLU] stage and SeedNet's head (its layers drawn
    from torch's generator right after the stem's)."""
    return chain(
        stem,
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(stem.out_channels, 6, 3, padding=1),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.LazyLinear(8),
        nn.ReLU(),
        nn.Linear(8, 2),
        nn.Sigmoid(),
    )


def test_strided_first_convolution() -> None:
    torch.manual_seed(15)
    stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    # odd size: the strided convolution drops a row and column that the gradient must restore
    model = built(stem_then_pooled_stage(stem), 33)
    background, frames = inputs(16, 8, 33), inputs(17, 2, 33)
    reference = published(model, background, frames)
    values = DeepShapEngine(model, background).explain(frames.numpy()).values
    assert np.abs(values - reference).max() <= TOL * max(1.0, np.abs(reference).max())


@pytest.mark.parametrize(
    ("size", "fast"), [(32, True), (34, False)], ids=["patch-grid", "input-not-a-multiple-of-the-patch"]
)
def test_patch_stem_equals_shap(size: int, fast: bool) -> None:
    """The patch-convolution shortcut (one batched product per patch, no per-row input gradient) gives
    shap's values; an input the patches do not tile takes the general transposed-convolution path."""
    torch.manual_seed(21)
    model = built(stem_then_pooled_stage(nn.Conv2d(3, 5, 4, stride=4)), size)  # EdgeNet's patch stem
    background, frames = inputs(22, 9, size), inputs(23, 3, size)
    reference = published(model, background, frames)
    engine = DeepShapEngine(model, background)
    assert (engine.layers[0].rule._patch_grid(engine.layers[0].in_shape) is not None) == fast  # type: ignore[attr-defined]
    result = engine.explain(frames.numpy())
    assert np.abs(result.values - reference).max() <= TOL * max(1.0, np.abs(reference).max())
    assert np.abs(reference).max() > 1e-4
    assert result.additivity_error().max() < 1e-4


def test_padded_maxpool_takes_shaps_unpool_path() -> None:
    model = built(seed_like(9, pool=nn.MaxPool2d(2, stride=2, padding=1)), 32)
    background, frames = inputs(10, 8), inputs(11, 2)
    reference = published(model, background, frames)
    values = DeepShapEngine(model, background).explain(frames.numpy()).values
    assert np.abs(values - reference).max() <= TOL * max(1.0, np.abs(reference).max())


def test_equal_and_nearly_equal_references_follow_shaps_fallbacks() -> None:
    """A background frame equal to the explained one (Δ = 0 everywhere) and one that differs only in a
    corner exercise the |Δin| < 1e-6 gradient fallback and the max-pool zeroing exactly as shap does."""
    model = built(seed_like(12))
    frames = inputs(13, 1)
    near = frames.clone()
    near[:, :, :8, :8] += 0.5
    background = torch.cat([frames, near, inputs(14, 4)])
    reference = published(model, background, frames)
    result = DeepShapEngine(model, background).explain(frames.numpy())
    assert np.abs(result.values - reference).max() <= TOL * max(1.0, np.abs(reference).max())
    assert result.additivity_error().max() < 1e-4


def test_networks_that_are_not_chains_are_refused() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2), nn.Sigmoid())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x) + x)

    with pytest.raises(ExplainError, match="chain"):
        read_chain(Skip().eval(), torch.zeros(1, 3, 8, 8))

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.flat = nn.Flatten()
            self.fc = nn.Linear(3 * 8 * 8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(self.flat(x)))

    with pytest.raises(ExplainError, match="not its last layer's output"):
        read_chain(Functional().eval(), torch.zeros(1, 3, 8, 8))


def test_unsupported_layers_are_named() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 2), nn.Softmax(dim=1)).eval()
    with pytest.raises(ExplainError, match="Softmax"):
        read_chain(model, torch.zeros(1, 3, 2, 2))


def exact_arithmetic_net(seed: int) -> nn.Sequential:
    """EdgeNet's pattern (patch stem, [MaxPool, ReLU] stages) with weights k/8, k ∈ {-2..2}, ending in a
    linear output: on integer inputs every sum is exact in float32 whatever the summation order, so the
    engine's and shap's forward values are bitwise equal and any difference comes from the rules alone."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 4, stride=4),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 2),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.copy_(torch.randint(-2, 3, m.weight.shape, generator=g) / 8)
                assert m.bias is not None
                m.bias.copy_(torch.randint(-2, 3, m.bias.shape, generator=g) / 8)
    return net.eval()


def blocky(rng: np.random.Generator, n: int, size: int = 32, block: int = 4) -> torch.Tensor:
    """0/1 images made of flat 4×4 blocks: identical patches, so tied maxima in most pooling windows."""
    b = rng.integers(0, 2, (n, 3, size // block, size // block)).astype(np.float32)
    return torch.from_numpy(np.kron(b, np.ones((1, 1, block, block), np.float32)))


def tied_windows(t: torch.Tensor) -> int:
    """Number of (row, channel, 2×2 window) triples of `t` whose maximum is reached more than once."""
    u = F.unfold(t, 2, stride=2).reshape(t.shape[0], t.shape[1], 4, -1)
    return int(((u == u.max(2, keepdim=True).values).sum(2) > 1).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tied_max_pool_windows_follow_shaps_tie_break(seed: int) -> None:
    """Frames and references whose pooling windows hold several equal maxima (hundreds of background ×
    channel pairs), and whose frame/reference differences are exactly zero in many places: the engine's
    max-pool rule (argmax = torch's first maximum, the frame part at the frame's argmax, the reference part
    at the reference's, zero where |Δin| < 1e-7) gives shap's values to rounding of the backward sums."""
    net = exact_arithmetic_net(seed)
    rng = np.random.default_rng(seed)
    background, frames = blocky(rng, 16), blocky(rng, 3)
    with torch.no_grad():
        stem = net[0]
        assert tied_windows(stem(background)) > 100 and tied_windows(stem(frames)) > 10
    reference = published(net, background, frames)
    result = DeepShapEngine(net, background).explain(frames.numpy())
    scale = float(np.abs(reference).max())
    assert scale > 1e-3
    assert np.abs(result.values - reference).max() <= 1e-6 * scale
    assert result.additivity_error().max() < 1e-5
