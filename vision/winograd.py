"""An exact rewrite of Conv3×3 → MaxPool 2 → ReLU as Winograd F(4×4, 3×3) with the pooling folded in.

Used only to trace the ONNX graph (`vision.export`, graph order "winograd"); torch training, the bundle's
weights and DeepSHAP keep the published network. Desktop only: imports torch.

Why: on a CPU without int8 dot-product instructions (this project's AVX2 bench machine) onnxruntime's INT8
convolutions are no faster than its float ones, and its float convolutions already run near the core's
peak. The only way to make the convolutions cheaper is to do fewer multiplications. Winograd's minimal
filtering algorithm F(4×4, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
computes each 4×4 block of a 3×3 convolution's output from a 6×6 block of its input with 36 multiplications
per input/output channel pair instead of 144: the convolution becomes 36 small matrix products (one per
point of the 6×6 transform) between fixed linear transforms of the input and of the output.

Three details make it pay inside onnxruntime:
- the input transform is separable; each half is a tiny convolution over single-channel images (the
  channels are moved into the batch axis), which onnxruntime runs with its fast convolution kernels;
- each 4×4 output block holds four whole 2×2 max-pooling windows, so the pooling is an element-wise `Max`
  of the output transform's rows (ordered so each pair is contiguous), and the bias add and ReLU run on
  the pooled, four times smaller result (max(x) + b = max(x + b); ReLU after MaxPool is the published order);
- the pooled result comes out "phase-major" (row parity, column parity, channel, row, column). Interleaving
  it back into an image costs more than it saves, so `WinogradFeatures` keeps that layout between stages:
  the next stage's input transform reads the phases directly, and the first fully connected layer gets its
  weight columns permuted to the phase-major order (a fixed permutation of its inputs: exact).

The arithmetic is exact up to float rounding (the transforms use the interpolation points 0, ±1, ±2); every
export checks the traced graph against the published torch network (max |Δprob| ≤ 1e-5).
"""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

TILE = 4  # output block side (m)
SPAN = TILE + 2  # input block side (m + r - 1, r = 3)
POOLED = TILE // 2  # pooled block side

# Lavin & Gray's F(4, 3) matrices (points 0, 1, -1, 2, -2, ∞), exact as fractions.
_BT = (
    (4, 0, -5, 0, 1, 0),
    (0, -4, -4, 1, 1, 0),
    (0, 4, -4, -1, 1, 0),
    (0, -2, -1, 2, 1, 0),
    (0, 2, -1, -2, 1, 0),
    (0, 4, 0, -5, 0, 1),
)
_G = (
    (Fraction(1, 4), 0, 0),
    (Fraction(-1, 6), Fraction(-1, 6), Fraction(-1, 6)),
    (Fraction(-1, 6), Fraction(1, 6), Fraction(-1, 6)),
    (Fraction(1, 24), Fraction(1, 12), Fraction(1, 6)),
    (Fraction(1, 24), Fraction(-1, 12), Fraction(1, 6)),
    (0, 0, 1),
)
_AT = (
    (1, 1, 1, 1, 1, 0),
    (0, 1, -1, 2, -2, 0),
    (0, 1, 1, 4, 4, 0),
    (0, 1, -1, 8, -8, 1),
)


def _matrix(rows: tuple[tuple[int | Fraction, ...], ...]) -> torch.Tensor:
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)


def is_rewritable(conv: nn.Module, pool: nn.Module, relu: nn.Module) -> bool:
    """Whether Conv → MaxPool → ReLU is the plain 3×3 / pool-2 triple this rewrite reproduces exactly."""
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(pool, nn.MaxPool2d)
        and isinstance(relu, nn.ReLU)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and _pair(pool.kernel_size) == (2, 2)
        and _pair(pool.stride) == (2, 2)
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return (value, value) if isinstance(value, int) else tuple(value)


class WinogradConvPoolReLU(nn.Module):
    """ReLU(MaxPool2(Conv3×3(x))) by Winograd F(4×4, 3×3); input and output may be phase-major.

    `phase_input`: x is (N, 2·2·C·h·w) phase-major, the layout this module writes with `phase_output`
    (row parity, column parity, channel, h, w) of an image of (N, C, 2h, 2w); otherwise an ordinary
    (N, C, H, W) image. H and W must be multiples of 4 (the output block) for an exact rewrite.
    """

    u: torch.Tensor
    at: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv2d, size: int, phase_input: bool, phase_output: bool) -> None:
        super().__init__()
        if size % TILE:
            raise ValueError(f"input side {size} is not a multiple of {TILE}")
        bt, g, at = _matrix(_BT), _matrix(_G), _matrix(_AT)
        weight = conv.weight.detach().double()
        c_out, c_in = weight.shape[:2]
        # U[ξν, o, i] = (G w[o, i] Gᵀ)[ξ, ν]: the filters in the transform domain.
        u = torch.einsum("xk,oikl,yl->xyoi", g, weight, g).reshape(SPAN * SPAN, c_out, c_in)
        self.register_buffer("u", u.float())
        # Output transform rows ordered (even rows, odd rows) so each pooling pair is two contiguous halves.
        pairs = [row for low in range(2) for row in range(low, TILE, 2)]
        self.register_buffer("at", at[pairs].float())
        if phase_input:
            # Block t reads image rows 4t-1+k (k = 0…5) = 2u+p: parity p = (k+1) mod 2 of phase row
            # u = 2t-1+j, j = (k+1) div 2. So the transform is a (4 × 1) convolution with stride 2 and
            # padding 1 over phase rows, with the two parities as its input channels; columns alike.
            taps = torch.zeros(SPAN, 2, 4, dtype=torch.float64)
            for k in range(SPAN):
                taps[:, (k + 1) % 2, (k + 1) // 2] = bt[:, k]
            self.register_buffer("rows", taps.reshape(SPAN, 2, 4, 1).float())
            self.register_buffer("cols", taps.reshape(SPAN, 2, 1, 4).float())
        else:
            self.register_buffer("rows", bt.reshape(SPAN, 1, SPAN, 1).float())
            self.register_buffer("cols", bt.reshape(SPAN, 1, 1, SPAN).float())
        bias = conv.bias if conv.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.detach().float().reshape(1, 1, c_out, 1, 1, 1))
        self.c_in, self.c_out, self.size = c_in, c_out, size
        self.tiles = size // TILE
        self.phase_input, self.phase_output = phase_input, phase_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Shapes are written with -1 for the batch (never read from x) so the traced graph carries no
        # Shape/Gather/Concat chains: they cost onnxruntime ~0.1 ms per frame.
        t, c, o = self.tiles, self.c_in, self.c_out
        v = self._input_transform(x)  # (N, C, 36, t·t)
        v = v.permute(2, 1, 0, 3).reshape(SPAN * SPAN, c, -1)  # (36, C, N·t·t)
        m = torch.matmul(self.u, v)  # (36, O, N·t·t)
        p = torch.matmul(self.at, m.reshape(SPAN, -1))  # (4 rows, 6 cols · O·N·t·t)
        y = torch.matmul(self.at, p.reshape(TILE, SPAN, -1))  # (4 rows, 4 cols, O·N·t·t)
        y = torch.maximum(y[:POOLED], y[POOLED:])  # rows pooled: (2, 4, O·N·t·t)
        y = torch.maximum(y[:, :POOLED], y[:, POOLED:])  # cols pooled: (2 row, 2 col parities, …)
        y = torch.relu(y.reshape(POOLED, POOLED, o, -1, t, t) + self.bias)
        if self.phase_output:
            return y.permute(3, 0, 1, 2, 4, 5).reshape(-1, POOLED * POOLED * o * t * t)
        return y.permute(3, 2, 4, 0, 5, 1).reshape(-1, o, t * POOLED, t * POOLED)

    def _input_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Bᵀ d B for every 6×6 input block d (stride 4, zero padding 1), as (N, C, 36, t·t)."""
        t, c, side = self.tiles, self.c_in, self.size
        if self.phase_input:
            half = side // 2
            x = x.reshape(-1, 2, 2, c, half, half)  # (N, row parity, col parity, C, h, w)
            x = x.permute(0, 2, 3, 1, 4, 5).reshape(-1, 2, half, half)  # rows: parity as channel
            r = nn.functional.conv2d(x, self.rows, stride=(2, 1), padding=(1, 0))  # (N·2·C, 6, t, w)
            r = r.reshape(-1, 2, c, SPAN, t, half).permute(0, 2, 3, 1, 4, 5)  # (N, C, 6, col parity, t, w)
            v = nn.functional.conv2d(r.reshape(-1, 2, t, half), self.cols, stride=(1, 2), padding=(0, 1))
            return v.reshape(-1, c, SPAN * SPAN, t * t)  # from (N·C·6, 6, t, t)
        x = x.reshape(-1, 1, side, side)
        # the zero padding of the rows and of the columns (which the column transform reads), in one go
        r = nn.functional.conv2d(x, self.rows, stride=(TILE, 1), padding=1)  # (N·C, 6, t, side + 2)
        v = nn.functional.conv2d(r.reshape(-1, 1, t, side + 2), self.cols, stride=(1, TILE))
        return v.reshape(-1, c, SPAN * SPAN, t * t)


MIN_CHANNELS = 32
"""Input channels below which a stage stays a direct convolution. The transforms cost in proportion to
(in + out channels) × pixels and the products to in × out channels × pixels, so thin, wide stages gain
nothing. Measured on the bench machine (AMD EPYC, AVX2, 1 thread, CPU time, seed network): the 32→64
stage on 56×56 drops from ~2.9 to ~2.0 ms; the 16→32 stage on 112×112 gets ~0.25 ms slower (its
transforms move ~13 MB per frame), and an RGB first layer has too few channels for the products to pay."""


def winograd_twin(network: nn.Module, input_size: int) -> nn.Module:
    """A copy of `network` whose eligible feature stages run as `WinogradConvPoolReLU` (see module doc).

    Expects `network.features` and `network.classifier` as `nn.Sequential`s (the project's networks).
    A stage is rewritten when `is_rewritable`, it has at least `MIN_CHANNELS` input channels, its input
    side is a multiple of 4, and its output can stay phase-major: it is the last module of the features and
    the classifier starts with (Dropout,) Flatten, Linear (whose weight columns are then permuted to the
    phase-major order), or the next module is another rewritten stage. Interleaving the phases back into
    an image costs onnxruntime more than the rewrite saves (a 0.4-0.9 ms transpose for seed's sizes).
    Other modules are kept as they are. The caller's network is untouched.
    """
    import copy

    twin = copy.deepcopy(network).eval()
    features, classifier = twin.features, twin.classifier
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Sequential):
        return twin
    children = list(features)
    sizes = _input_sides(children, input_size)
    stages = [i for i in range(len(children) - 2) if _eligible(children, i, sizes[i])]
    head = _linear_after_flatten(classifier)
    stages = _phase_chains(_non_overlapping(stages), len(children), head is not None)
    if not stages or head is None:
        return twin
    rebuilt: list[nn.Module] = []
    i = 0
    while i < len(children):
        conv = children[i]
        if i in stages and isinstance(conv, nn.Conv2d):
            # every rewritten stage writes phase-major maps (see `_phase_chains`)
            rebuilt.append(
                WinogradConvPoolReLU(conv, sizes[i], phase_input=i - 3 in stages, phase_output=True)
            )
            i += 3
        else:
            rebuilt.append(conv)
            i += 1
    twin.features = nn.Sequential(*rebuilt)
    last = rebuilt[-1]
    assert isinstance(last, WinogradConvPoolReLU)
    index, linear = head
    classifier[index] = _permuted_linear(linear, last.c_out, last.size // 2)
    return twin


def _eligible(children: list[nn.Module], i: int, side: int) -> bool:
    conv = children[i]
    return (
        is_rewritable(conv, children[i + 1], children[i + 2])
        and isinstance(conv, nn.Conv2d)
        and conv.in_channels >= MIN_CHANNELS
        and side % TILE == 0
    )


def _input_sides(children: list[nn.Module], input_size: int) -> list[int]:
    """The spatial side of each feature module's input, from a forward pass of one zero image."""
    sides = []
    first = next(m for m in children if isinstance(m, nn.Conv2d))
    x = torch.zeros(1, first.in_channels, input_size, input_size)
    with torch.no_grad():
        for module in children:
            sides.append(int(x.shape[-1]))
            x = module(x)
    return sides


def _phase_chains(starts: list[int], n_children: int, has_head: bool) -> list[int]:
    """The stages whose output can stay phase-major: chains of adjacent stages ending the features."""
    kept: list[int] = []
    for start in reversed(starts):
        ends_features = start + 3 == n_children and has_head
        if ends_features or (kept and kept[-1] == start + 3):
            kept.append(start)
    return sorted(kept)


def _non_overlapping(starts: list[int]) -> list[int]:
    kept: list[int] = []
    for start in starts:
        if not kept or start >= kept[-1] + 3:
            kept.append(start)
    return kept


def _linear_after_flatten(classifier: nn.Sequential) -> tuple[int, nn.Linear] | None:
    """(index, layer) of the classifier's first Linear when only Dropout and one Flatten come before it."""
    seen_flatten = False
    for index, module in enumerate(classifier):
        if isinstance(module, nn.Dropout):
            continue
        if isinstance(module, nn.Flatten) and not seen_flatten:
            seen_flatten = True
            continue
        if isinstance(module, nn.Linear) and seen_flatten:
            return index, module
        return None
    return None


def phase_major_order(channels: int, side: int) -> torch.Tensor:
    """For each position of the phase-major layout of a (channels, side, side) map, its flat NCHW index."""
    half = side // 2
    index = torch.arange(channels * side * side).reshape(channels, half, 2, half, 2)
    return index.permute(2, 4, 0, 1, 3).reshape(-1)  # (row parity, col parity, channel, h, w)


def _permuted_linear(linear: nn.Linear, channels: int, side: int) -> nn.Linear:
    order = phase_major_order(channels, side)
    if linear.in_features != order.numel():
        raise ValueError(f"Linear expects {linear.in_features} inputs, the features give {order.numel()}")
    permuted = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        permuted.weight.copy_(linear.weight[:, order])
        if linear.bias is not None and permuted.bias is not None:
            permuted.bias.copy_(linear.bias)
    return permuted.eval()


def onnx_scope_prefixes(module: nn.Module) -> list[str]:
    """The ONNX node-name prefixes torch.onnx gives the nodes of each Winograd stage inside `module`.

    The TorchScript exporter names a node of submodule "features.6" "/features/features.6/<Op>"; the
    quantiser keeps these nodes float (`vision.quantize.marked_float_nodes`).
    """
    prefixes = []
    for name, sub in module.named_modules():
        if isinstance(sub, WinogradConvPoolReLU):
            parts = name.split(".")
            prefixes.append("/" + "/".join(".".join(parts[: i + 1]) for i in range(len(parts))) + "/")
    return prefixes
