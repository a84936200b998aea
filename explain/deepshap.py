"""A fast, exact DeepSHAP engine for chain networks (SeedNet, EdgeNet, any chain of supported layers).

It computes the same numbers as `shap.DeepExplainer(model, background).shap_values(x)` (shap 0.51,
`deep_pytorch.py`), but does far less work for them:

- shap tiles the frame N times beside the N background frames and runs forward + backward over 2N rows,
  once per output. The DeepLIFT rescale rule only ever reads, for background row j, the pair (frame
  activation, background j activation), and shap keeps only the background half of the gradient. Here
  the frame runs forward once (batch 1), the background's activations are computed once per audit (or
  per batch of frames when they do not fit in memory), and only the N background rows are run backward.
- Every requested output, and several frames, share one backward pass (rows = frames × outputs × N).
- Layers are not hooked: the chain of leaf modules is read once, and each layer's DeepLIFT rule is
  applied directly (`LayerRule` registry below), in no-grad mode.

The rules reproduce shap's, including its numerical corner cases: the gradient fallback where
|Δin| < 1e-6 for activations, the zeroing where |Δin| < 1e-7 in max-pooling, and the frame-row gradient
that shap's max-pool rule reads (it differs from the background row's only after such a fallback, so it
is tracked only when that happens). One deliberate difference: where max-pool windows overlap, shap's
unpooling keeps one window's share at an input position two windows both pick, and its values stop adding
up to f(x) − E f; here the shares are summed (`MaxPool2dRule._unpool_divide`), which is additive. With
non-overlapping windows (SeedNet, EdgeNet, VGG) nothing can collide and the values are shap's.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from explain.errors import ExplainError

ACTIVATION_FALLBACK = 1e-6  # shap's nonlinear_1d: below this |Δin| the ordinary gradient is used
MAXPOOL_ZERO = 1e-7  # shap's maxpool: below this |Δin| the multiplier is 0


# --------------------------------------------------------------------------------------------- state


@dataclass(slots=True)
class RowGrads:
    """Gradients flowing backward, shaped (frames, outputs, background, *features).

    `bg` is the background rows' gradient, the one shap keeps. `frame` is the tiled frame rows' gradient,
    which equals `bg` (None) except after an activation's gradient fallback and up to the next max-pool.
    """

    bg: torch.Tensor
    frame: torch.Tensor | None = None

    def frame_or_bg(self) -> torch.Tensor:
        return self.bg if self.frame is None else self.frame


@dataclass(slots=True)
class Saved:
    """What one layer's rule keeps from a forward pass (for the frames or for a background chunk)."""

    x: torch.Tensor | None = None  # layer input
    y: torch.Tensor | None = None  # layer output
    aux: torch.Tensor | None = None  # rule-specific: activation derivative, max-pool argmax mask/indices


def _lead(t: torch.Tensor, where: str) -> torch.Tensor:
    """Put frame activations (B, *f) or background activations (c, *f) into the (B, K, c, *f) layout."""
    return t[:, None, None] if where == "frame" else t[None, None]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape((-1, *t.shape[3:]))


def _unflat(t: torch.Tensor, lead: tuple[int, int, int]) -> torch.Tensor:
    return t.reshape((*lead, *t.shape[1:]))


# --------------------------------------------------------------------------------------------- rules


class LayerRule(ABC):
    """How one kind of leaf module takes part in DeepLIFT (shap's `op_handler`)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Saved]:
        y = self.module(x)
        return y, self.save(x, y)

    def save(self, x: torch.Tensor, y: torch.Tensor) -> Saved:
        return Saved()

    @abstractmethod
    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        """Gradients at the layer's output → gradients at its input (both in the (B, K, c, *f) layout)."""

    def input_attribution(
        self, g: RowGrads, frame: Saved, bg: Saved, x: torch.Tensor, ref: torch.Tensor
    ) -> torch.Tensor:
        """For the network's first layer: Σ over background rows of (frame − reference) ⊙ input multiplier.

        `g` is at this layer's output, `x` the frames (B, *in), `ref` the background rows (c, *in); the
        result is (B, K, *in). Rules whose input gradient has a cheap closed form override this to avoid
        materialising one full-size gradient per row.
        """
        inp = self.backward(g, frame, bg, tuple(x.shape[1:]))
        return (inp.bg * (x[:, None, None] - ref[None, None])).sum(2)


class PassthroughRule(LayerRule):
    """Dropout (eval), Identity, Flatten: the ordinary gradient, reshaped to the input."""

    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        lead = tuple(g.bg.shape[:3])
        fr = None if g.frame is None else g.frame.reshape((*lead, *in_shape))
        return RowGrads(g.bg.reshape((*lead, *in_shape)), fr)


class AffineRule(LayerRule):
    """Linear, convolution, average pooling, batch norm (eval): the ordinary gradient (shap's linear_1d)."""

    def vjp(self, g: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Gradient w.r.t. the input for flat rows `g` (R, *out); affine, so it needs no activations."""
        with torch.enable_grad():
            z = torch.zeros((g.shape[0], *in_shape), dtype=g.dtype, device=g.device, requires_grad=True)
            (grad,) = torch.autograd.grad(self.module(z), z, g)
        return grad

    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        lead = tuple(g.bg.shape[:3])
        out_bg = _unflat(self.vjp(_flat(g.bg), in_shape), lead)  # type: ignore[arg-type]
        out_fr = None if g.frame is None else _unflat(self.vjp(_flat(g.frame), in_shape), lead)  # type: ignore[arg-type]
        return RowGrads(out_bg, out_fr)


class LinearRule(AffineRule):
    def vjp(self, g: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        assert isinstance(self.module, nn.Linear)
        return g @ self.module.weight


class Conv2dRule(AffineRule):
    """Convolutions. A first-layer patch convolution (kernel = stride, no padding, dilation or groups, the
    input an exact multiple of the kernel) touches every input pixel through exactly one weight per output
    channel, so its attribution contracts the background rows inside one batched matrix product (see
    `input_attribution`) instead of forming every row's input gradient."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        assert isinstance(module, nn.Conv2d)
        self.conv = module
        k, s = _pair(module.kernel_size), _pair(module.stride)
        plain = (
            not isinstance(module.padding, str)
            and _pair(module.padding) == (0, 0)
            and _pair(module.dilation) == (1, 1)
            and module.groups == 1
            and module.padding_mode == "zeros"
        )
        self.patch: tuple[int, int] | None = k if plain and k == s else None
        self._ref_patches: dict[tuple[int, int, tuple[int, ...]], torch.Tensor] = {}

    def _patch_grid(self, in_shape: Sequence[int]) -> tuple[int, int, int, int] | None:
        """(kh, kw, rows, cols) of patches when the fast path applies to inputs of `in_shape` (C, H, W)."""
        if self.patch is None or len(in_shape) != 3:
            return None
        (kh, kw), (h, w) = self.patch, (int(in_shape[1]), int(in_shape[2]))
        if h % kh or w % kw:
            return None
        return kh, kw, h // kh, w // kw

    def _to_patches(self, t: torch.Tensor, grid: tuple[int, int, int, int]) -> torch.Tensor:
        """(N, C, H, W) → (N, P, J): P patches in row-major order, J = C·kh·kw values each."""
        kh, kw, rows, cols = grid
        n, c = t.shape[0], t.shape[1]
        return (
            t.reshape(n, c, rows, kh, cols, kw).permute(0, 2, 4, 1, 3, 5).reshape(n, rows * cols, c * kh * kw)
        )

    def _from_patches(self, t: torch.Tensor, grid: tuple[int, int, int, int], c: int) -> torch.Tensor:
        """(..., P, J) → (..., C, H, W), the inverse of `_to_patches`."""
        kh, kw, rows, cols = grid
        lead = tuple(t.shape[:-2])
        d = len(lead)
        t = t.reshape(*lead, rows, cols, c, kh, kw)
        order = (*range(d), d + 2, d, d + 3, d + 1, d + 4)
        return t.permute(order).reshape(*lead, c, rows * kh, cols * kw)

    def vjp(self, g: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        m = self.conv
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            return super().vjp(g, in_shape)
        # The input gradient of a convolution is the transposed convolution of the output gradient;
        # output_padding restores the rows/columns a strided convolution dropped.
        stride, padding, dilation = _pair(m.stride), _pair(m.padding), _pair(m.dilation)
        kernel = _pair(m.kernel_size)
        extra = tuple(
            in_shape[1 + i]
            - ((g.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + 1)
            for i in range(2)
        )
        return F.conv_transpose2d(g, m.weight, None, stride, padding, extra, m.groups, dilation)

    def input_attribution(
        self, g: RowGrads, frame: Saved, bg: Saved, x: torch.Tensor, ref: torch.Tensor
    ) -> torch.Tensor:
        """Σ_c (x − r_c) ⊙ Wᵀg_c for a patch convolution, per patch p and patch value j:

            Σ_o W[o, j] · (x[p, j] · Σ_c g_c[o, p]  −  Σ_c r_c[p, j] · g_c[o, p])

        The second sum is one (B·K·O × c) @ (c × J) product per patch; no (rows, C, H, W) gradient exists.
        """
        grid = self._patch_grid(tuple(x.shape[1:]))
        if grid is None:
            return super().input_attribution(g, frame, bg, x, ref)
        m = self.conv
        b, k, c, o = g.bg.shape[:4]
        patches = grid[2] * grid[3]
        weight = m.weight.reshape(o, -1)  # (O, J)
        x_p = self._to_patches(x, grid)  # (B, P, J)
        r_p = self._reference_patches(ref, grid)  # (P, c, J)
        by_patch = _patch_major(g.bg.reshape(b, k, c, o, patches))  # (P, B·K·O, c)
        g_sum = by_patch.sum(2).reshape(patches, b, k, o)  # Σ_c g_c
        cross = torch.bmm(by_patch, r_p).reshape(patches, b, k, o, -1)  # Σ_c g_c r_c: (P, B, K, O, J)
        frame_term = torch.einsum("pbko,oj->bkpj", g_sum, weight) * x_p[:, None]
        ref_term = (cross * weight).sum(3).permute(1, 2, 0, 3)  # Σ_o W[o, j] · cross: (B, K, P, J)
        return self._from_patches(frame_term - ref_term, grid, int(x.shape[1]))

    def _reference_patches(self, ref: torch.Tensor, grid: tuple[int, int, int, int]) -> torch.Tensor:
        """The background rows in (P, c, J) layout, kept per background slice (it is fixed per engine)."""
        key = (ref.data_ptr(), int(ref.shape[0]), tuple(ref.shape[1:]))
        cached = self._ref_patches.get(key)
        if cached is None:
            cached = self._to_patches(ref, grid).transpose(0, 1).contiguous()
            self._ref_patches[key] = cached
        return cached


class ActivationRule(LayerRule):
    """Elementwise activations (shap's nonlinear_1d): multiplier Δout/Δin, the gradient where Δin ≈ 0."""

    def derivative(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """f'(x) elementwise, as autograd computes it (used only where |Δin| < 1e-6)."""
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.module(z), z, torch.ones_like(y))
        return grad

    def save(self, x: torch.Tensor, y: torch.Tensor) -> Saved:
        return Saved(x=x, y=y)

    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        assert frame.x is not None and frame.y is not None and bg.x is not None and bg.y is not None
        fx, fy = _lead(frame.x, "frame"), _lead(frame.y, "frame")
        bx, by = _lead(bg.x, "bg"), _lead(bg.y, "bg")
        delta_in = fx - bx
        ratio = (fy - by) / delta_in
        fallback = torch.abs(delta_in) < ACTIVATION_FALLBACK
        if not bool(fallback.any()):
            bg_out = g.bg * ratio
            return RowGrads(bg_out, None if g.frame is None else g.frame * ratio)
        # The multiplier is chosen per frame × reference pair (half the size of the rows when both
        # outputs are explained), then applied to the rows in one product.
        d_bg = _lead(self._derivative(bg), "bg")
        d_fr = _lead(self._derivative(frame), "frame")
        bg_out = g.bg * torch.where(fallback, d_bg, ratio)
        diverges = g.frame is not None or bool((fallback & (d_bg != d_fr)).any())
        if not diverges:
            return RowGrads(bg_out, None)
        return RowGrads(bg_out, g.frame_or_bg() * torch.where(fallback, d_fr, ratio))

    def _derivative(self, saved: Saved) -> torch.Tensor:
        if saved.aux is None:
            assert saved.x is not None and saved.y is not None
            saved.aux = self.derivative(saved.x, saved.y)
        return saved.aux


class ReLURule(ActivationRule):
    def derivative(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (y > 0).to(y.dtype)  # torch's threshold_backward: the gradient passes where the result > 0


class SigmoidRule(ActivationRule):
    def derivative(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1 - y) * y


class MaxPool2dRule(LayerRule):
    """shap's maxpool rule: the output difference, split between the frame's and the reference's argmax.

    Δout is written as (max(y, r) − r) at the frame's argmax plus (y − max(y, r)) at the reference's
    argmax, each divided by Δin there (0 where |Δin| < 1e-7); every other input position gets 0. With
    non-overlapping windows (kernel = stride, no padding/dilation) that is two scatters of pooled-size
    values, instead of shap's full-size unpool, divide and select over every row. Where windows overlap,
    a position picked by several windows gets the sum of their parts (shap keeps one; see `_unpool_divide`).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        assert isinstance(module, nn.MaxPool2d)
        self.pool = module
        k, s = _pair(module.kernel_size), _pair(module.stride if module.stride else module.kernel_size)
        self.simple = (
            k == s and _pair(module.padding) == (0, 0) and _pair(module.dilation) == (1, 1)
        ) and not module.ceil_mode
        # Set by the engine when a patch convolution comes right before: it reads the gradient patch-major
        # (see `_patch_major`), so the scatter writes it in that layout directly.
        self.patch_major = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Saved]:
        p = self.pool
        y, idx = F.max_pool2d(x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, True)
        return y, Saved(x=x, y=y, aux=idx)

    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        assert frame.y is not None and bg.y is not None
        fy, by = _lead(frame.y, "frame"), _lead(bg.y, "bg")
        cross = torch.maximum(fy, by)
        to_frame_max = cross - by  # the part of Δout credited at the frame's argmax
        to_ref_max = fy - cross  # the part credited at the reference's argmax
        if not self.simple:
            at_frame = g.frame_or_bg() * to_frame_max
            return RowGrads(self._unpool_divide(at_frame, g.bg * to_ref_max, frame, bg, in_shape), None)
        return RowGrads(
            self._scatter(
                g, to_frame_max=to_frame_max, to_ref_max=to_ref_max, frame=frame, bg=bg, in_shape=in_shape
            ),
            None,
        )

    def _scatter(
        self,
        g: RowGrads,
        *,
        to_frame_max: torch.Tensor,
        to_ref_max: torch.Tensor,
        frame: Saved,
        bg: Saved,
        in_shape: tuple[int, ...],
    ) -> torch.Tensor:
        """Non-overlapping windows: the multipliers are written at ≤ 2 positions per window.

        Everything that does not depend on the output rows (Δin at both argmaxes, the 1/Δin factors) is
        computed once per frame × reference pair, then each row costs two products and two scatters.
        """
        assert frame.x is not None and frame.y is not None and frame.aux is not None
        assert bg.x is not None and bg.y is not None and bg.aux is not None
        b, k, c = g.bg.shape[:3]
        ch = g.bg.shape[3]
        hw, full = g.bg.shape[4] * g.bg.shape[5], in_shape[-2] * in_shape[-1]
        fi = frame.aux.reshape(b, 1, 1, ch, hw)  # frame argmax, flat index into H*W
        bi = bg.aux.reshape(1, 1, c, ch, hw)  # reference argmax
        fx = frame.x.reshape(b, 1, 1, ch, full)
        bx = bg.x.reshape(1, 1, c, ch, full)
        # Δin at the frame's argmax (the frame's value there is its max) and at the reference's argmax.
        b_at_fi = torch.gather(bx.expand(b, 1, c, ch, full), 4, fi.expand(b, 1, c, ch, hw))
        d_frame = frame.y.reshape(b, 1, 1, ch, hw) - b_at_fi
        x_at_bi = torch.gather(fx.expand(b, 1, c, ch, full), 4, bi.expand(b, 1, c, ch, hw))
        d_ref = x_at_bi - bg.y.reshape(1, 1, c, ch, hw)
        same = fi == bi  # both argmaxes on one position: its multiplier is (both parts) / Δin
        inv_frame = torch.where(torch.abs(d_frame) < MAXPOOL_ZERO, 0.0, 1.0 / d_frame)
        inv_ref = torch.where(same | (torch.abs(d_ref) < MAXPOOL_ZERO), 0.0, 1.0 / d_ref)
        ref_part = to_ref_max.reshape(b, 1, c, ch, hw)
        frame_part = to_frame_max.reshape(b, 1, c, ch, hw)
        gb = g.bg.reshape(b, k, c, ch, hw)
        if g.frame is None:
            v_frame = gb * ((frame_part + torch.where(same, ref_part, 0.0)) * inv_frame)
        else:
            gf = g.frame.reshape(b, k, c, ch, hw)
            v_frame = (gf * frame_part + gb * torch.where(same, ref_part, 0.0)) * inv_frame
        v_ref = gb * (ref_part * inv_ref)
        if self.patch_major:  # memory order (position, b, k, channel, reference): `_patch_major`'s
            buffer = torch.zeros(full * b * k * ch * c, dtype=gb.dtype, device=gb.device)
            out = buffer.as_strided((b, k, c, ch, full), (k * ch * c, ch * c, 1, c, b * k * ch * c))
        else:
            out = torch.zeros((b, k, c, ch, full), dtype=gb.dtype, device=gb.device)
        # Reference part first, frame part second, both plain writes (a scatter-add is ~3× slower): windows do
        # not overlap, so the two writes can only meet where both argmaxes are one position, and there v_ref
        # is 0 and v_frame already holds both parts.
        out.scatter_(4, bi.expand(b, k, c, ch, hw), v_ref)
        out.scatter_(4, fi.expand(b, k, c, ch, hw), v_frame)
        return out.reshape((b, k, c, *in_shape))

    def _unpool_divide(
        self, at_frame: torch.Tensor, at_ref: torch.Tensor, frame: Saved, bg: Saved, in_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """Overlapping windows (or padding): add every window's two parts at its argmax positions, then
        divide by Δin there.

        shap unpools with `max_unpool2d`, which keeps one value where two windows pick the same input
        position (ResNet's 3×3 stride-2 stem pool), so the other windows' Δout is lost and the values no
        longer add up to f(x) − E f. Summing the collisions makes Σ Δin · multiplier = Σ Δout exactly.
        """
        assert frame.x is not None and frame.aux is not None and bg.x is not None and bg.aux is not None
        lead = tuple(at_frame.shape[:3])
        rows, ch, full = math.prod(lead), int(in_shape[0]), int(in_shape[-2]) * int(in_shape[-1])
        summed = torch.zeros((rows, ch, full), dtype=at_frame.dtype, device=at_frame.device)
        for part, idx in ((at_frame, _lead(frame.aux, "frame")), (at_ref, _lead(bg.aux, "bg"))):
            flat_idx = idx.expand((*lead, *idx.shape[3:])).reshape(rows, ch, -1)
            summed.scatter_add_(2, flat_idx, part.reshape(rows, ch, -1))
        unpooled = summed.reshape((*lead, *in_shape))
        delta_in = _lead(frame.x, "frame") - _lead(bg.x, "bg")
        return torch.where(torch.abs(delta_in) < MAXPOOL_ZERO, 0.0, unpooled / delta_in)


def _patch_major(g: torch.Tensor) -> torch.Tensor:
    """(B, K, c, O, P) → (P, B·K·O, c), contiguous: a view when a patch-major max-pool wrote `g` (the
    usual case, `_plan_layouts`), else one copy.

    The copy goes through a plain 2-D transpose first: one direct permute would read with a stride of O·P
    floats for every element written (measured ~5× slower); the permute after it moves whole rows of c.
    """
    b, k, c, o, p = g.shape
    view = g.permute(4, 0, 1, 3, 2)
    if view.is_contiguous():
        return view.reshape(p, b * k * o, c)
    flipped = g.reshape(b * k * c, o * p).t().contiguous()  # (O·P, B·K·c)
    return flipped.reshape(o, p, b * k, c).permute(1, 2, 0, 3).reshape(p, b * k * o, c)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


RuleFactory = Callable[[nn.Module], LayerRule]
RULES: dict[type[nn.Module], RuleFactory] = {
    nn.Dropout: PassthroughRule,
    nn.Dropout2d: PassthroughRule,
    nn.Identity: PassthroughRule,
    nn.Flatten: PassthroughRule,
    nn.Linear: LinearRule,
    nn.Conv2d: Conv2dRule,
    nn.AvgPool2d: AffineRule,
    nn.AdaptiveAvgPool2d: AffineRule,
    nn.BatchNorm2d: AffineRule,
    nn.BatchNorm1d: AffineRule,
    nn.ReLU: ReLURule,
    nn.Sigmoid: SigmoidRule,
    nn.Tanh: ActivationRule,
    nn.ELU: ActivationRule,
    nn.LeakyReLU: ActivationRule,
    nn.Softplus: ActivationRule,
    nn.GELU: ActivationRule,
    nn.SELU: ActivationRule,
    nn.MaxPool2d: MaxPool2dRule,
}


# --------------------------------------------------------------------------------------------- chain


@dataclass(frozen=True, slots=True)
class ChainLayer:
    name: str
    rule: LayerRule
    in_shape: tuple[int, ...]  # per sample
    out_shape: tuple[int, ...]


def read_chain(model: nn.Module, example: torch.Tensor) -> tuple[ChainLayer, ...]:
    """The model's leaf modules in execution order, checked to form a chain of supported layers.

    The check is by tensor identity: each leaf must consume exactly the tensor the previous leaf
    produced, and the model's output must be the last leaf's output. Anything else (skip connections,
    functional activations in `forward`, in-place ops) is refused rather than explained wrongly.
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    handles = []
    for name, module in leaves:

        def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name) -> None:
            calls.append((name, mod, inp[0], out))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            result = model(example)
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise ExplainError("the network has no layers to explain; check the bundle's architecture")
    layers: list[ChainLayer] = []
    previous: torch.Tensor = example
    for name, module, inp, out in calls:
        if inp is not previous:
            raise ExplainError(
                f"layer {name!r} does not take the previous layer's output: DeepSHAP here explains chain "
                "networks only (every activation its own module, no skip connections, nothing in-place)"
            )
        factory = RULES.get(type(module))
        if factory is None:
            raise ExplainError(
                f"layer {name!r} ({type(module).__name__}) has no DeepLIFT rule; supported: "
                f"{sorted(t.__name__ for t in RULES)}"
            )
        layers.append(ChainLayer(name, factory(module), tuple(inp.shape[1:]), tuple(out.shape[1:])))
        previous = out
    if result is not previous:
        raise ExplainError("the network's output is not its last layer's output; it is not a chain")
    return tuple(layers)


def _plan_layouts(layers: Sequence[ChainLayer]) -> None:
    """Let a max-pool that feeds a first-layer patch convolution write its gradient patch-major."""
    if len(layers) < 2:
        return
    first, second = layers[0].rule, layers[1].rule
    if (
        isinstance(first, Conv2dRule)
        and first._patch_grid(layers[0].in_shape) is not None
        and isinstance(second, MaxPool2dRule)
        and second.simple
    ):
        second.patch_major = True


def _forward(layers: Sequence[ChainLayer], x: torch.Tensor) -> tuple[torch.Tensor, list[Saved]]:
    saved: list[Saved] = []
    for layer in layers:
        x, s = layer.rule.forward(x)
        saved.append(s)
    return x, saved


class ChainProgram:
    """A chain of layers (the fast path): forward and backward are plain loops over the layers."""

    def __init__(self, layers: tuple[ChainLayer, ...]) -> None:
        self.layers = layers
        _plan_layouts(layers)
        self.widest = max(math.prod(lay.in_shape) for lay in layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Saved]]:
        return _forward(self.layers, x)

    def attribute(
        self, g: RowGrads, frame: list[Saved], bg: list[Saved], x: torch.Tensor, ref: torch.Tensor
    ) -> torch.Tensor:
        """Σ over the background rows of (frame − reference) ⊙ the input multipliers, (B, K, *in)."""
        for layer, fs, bs in zip(
            reversed(self.layers[1:]), reversed(frame[1:]), reversed(bg[1:]), strict=True
        ):
            g = layer.rule.backward(g, fs, bs, layer.in_shape)
        return self.layers[0].rule.input_attribution(g, frame[0], bg[0], x, ref)


class Program(Protocol):
    """What the engine runs: a chain (`ChainProgram`) or a traced graph (`deepshap_graph.GraphProgram`)."""

    widest: int  # largest activation of one sample, in elements (sizes the backward chunks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Saved]]: ...

    def attribute(
        self, g: RowGrads, frame: list[Saved], bg: list[Saved], x: torch.Tensor, ref: torch.Tensor
    ) -> torch.Tensor: ...


def out_of_place(model: nn.Module) -> nn.Module:
    """The model itself, or a copy with every `inplace=True` switched off (same values): the rules read a
    layer's input after its output exists, which an in-place activation would have overwritten."""
    if not any(getattr(m, "inplace", False) is True for m in model.modules()):
        return model
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False  # type: ignore[assignment]
    return twin


def build_program(model: nn.Module, example: torch.Tensor) -> Program:
    """The chain fast path when the network is a chain of supported layers, else its traced graph."""
    model = out_of_place(model)
    try:
        return ChainProgram(read_chain(model, example))
    except ExplainError as not_a_chain:
        from explain.deepshap_graph import GraphProgram

        try:
            return GraphProgram(model, example)
        except ExplainError as graph_error:
            raise ExplainError(f"{graph_error} (and as a chain: {not_a_chain})") from None


# --------------------------------------------------------------------------------------------- engine


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the kernel.

    The engine allocates and frees tensors of tens to hundreds of MB per layer and chunk. By default
    glibc serves those with fresh mmaps, and every page of every one is zero-filled by the kernel on first
    touch: measured on SeedNet, 1.6 M page faults and ~25% of the CPU time of a frame, in the kernel.
    Without mmap and with trimming off, freed blocks are reused from the heap. Process-wide, so it is
    done only by this (desktop, audit) engine, never on the car. Returns whether the setting took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # glibc's mallopt parameter numbers
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc (e.g. musl): keep the default allocator behaviour
        return False


@dataclass(frozen=True, slots=True)
class Attributions:
    """DeepSHAP values of some frames for some outputs.

    `values` is float32 (frames, outputs, C, H, W); `outputs` the explained output indices; `expected`
    the mean output over the background (per explained output); `model_output` the network's output for
    each frame (per explained output). Additivity: values summed over C, H, W + expected = model_output.
    """

    values: np.ndarray
    outputs: tuple[int, ...]
    expected: np.ndarray
    model_output: np.ndarray

    def additivity_error(self) -> np.ndarray:
        """|Σ values + expected − output| per frame and output."""
        total = self.values.reshape(self.values.shape[0], self.values.shape[1], -1).astype(np.float64).sum(-1)
        return np.abs(total + self.expected[None, :] - self.model_output)

    def of_output(self, output: int) -> np.ndarray:
        """(frames, C, H, W) values for one output index."""
        return self.values[:, self.outputs.index(output)]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Memory knobs; they change speed, never the values."""

    cache_bytes: int = 1280 * 2**20  # keep the background's activations if they fit in this
    work_bytes: int = 384 * 2**20  # largest gradient tensor of one backward chunk
    frames_per_pass: int = 4
    reuse_memory: bool = True  # see keep_freed_memory()


class DeepShapEngine:
    """Exact DeepSHAP (shap.DeepExplainer's values) for a network and a fixed background: a chain of layers
    (fast path) or any network torch.fx can trace (`explain/deepshap_graph.py`)."""

    def __init__(
        self,
        model: nn.Module,
        background: torch.Tensor | np.ndarray,
        device: str | torch.device = "cpu",
        settings: EngineSettings | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.settings = settings or EngineSettings()
        if self.device.type == "cpu" and self.settings.reuse_memory:
            keep_freed_memory()
        self.model = model.eval().to(self.device)
        # float32 unless the network's weights are float64 (then the whole computation is, e.g. for checks)
        params = [p for p in model.parameters() if p.is_floating_point()]
        self.dtype = torch.float64 if params and params[0].dtype == torch.float64 else torch.float32
        self.background = torch.as_tensor(np.asarray(background, dtype=np.float32)).to(
            self.device, self.dtype
        )
        if self.background.ndim < 2 or self.background.shape[0] < 1:
            raise ExplainError("the background needs at least one frame")
        self.program = build_program(self.model, self.background[:1])
        n = self.background.shape[0]
        self.widest = self.program.widest
        chunk = self._bg_chunk(rows_per_bg=1)
        outputs: list[torch.Tensor] = []
        cache: list[tuple[int, int, list[Saved]]] | None = []
        with torch.no_grad():
            for lo, hi in _spans(n, chunk):
                out, saved = self.program.forward(self.background[lo:hi])
                outputs.append(out)
                if cache is not None and lo == 0 and _saved_bytes(saved) * n / hi > self.settings.cache_bytes:
                    cache = None  # too big to keep: recomputed per batch of frames instead
                if cache is not None:
                    cache.append((lo, hi, saved))
        self._cache = cache
        bg_out = torch.cat(outputs)
        if bg_out.ndim != 2:
            raise ExplainError(
                f"the network's output has shape {tuple(bg_out.shape[1:])}; expected (outputs,)"
            )
        self.num_outputs = int(bg_out.shape[1])
        self.expected_value = bg_out.mean(0).cpu().numpy()

    @property
    def layers(self) -> tuple[ChainLayer, ...]:
        """The chain's layers (empty for a graph network)."""
        return self.program.layers if isinstance(self.program, ChainProgram) else ()

    @property
    def is_chain(self) -> bool:
        """Whether the chain fast path runs (else the traced graph, `explain/deepshap_graph.py`)."""
        return isinstance(self.program, ChainProgram)

    @property
    def background_size(self) -> int:
        return int(self.background.shape[0])

    @property
    def caches_background(self) -> bool:
        return self._cache is not None

    def _bg_chunk(self, rows_per_bg: int) -> int:
        per_row = 4 * self.widest
        return max(1, min(self.background_size, self.settings.work_bytes // max(1, per_row * rows_per_bg)))

    def _background_chunks(self, chunk: int) -> Iterator[tuple[int, int, list[Saved]]]:
        if self._cache is not None:
            yield from self._cache
            return
        for lo, hi in _spans(self.background_size, chunk):
            _, saved = self.program.forward(self.background[lo:hi])
            yield lo, hi, saved

    def explain(
        self, frames: torch.Tensor | np.ndarray, outputs: Sequence[int] | None = None
    ) -> Attributions:
        """DeepSHAP values of `frames` (N, C, H, W), float32 network inputs, for the given output indices."""
        x_all = torch.as_tensor(np.asarray(frames, dtype=np.float32)).to(self.device, self.dtype)
        if tuple(x_all.shape[1:]) != tuple(self.background.shape[1:]):
            raise ExplainError(
                f"frames have shape {tuple(x_all.shape[1:])}, "
                f"the background {tuple(self.background.shape[1:])}"
            )
        outs = tuple(range(self.num_outputs)) if outputs is None else tuple(int(o) for o in outputs)
        if not outs or min(outs) < 0 or max(outs) >= self.num_outputs:
            raise ExplainError(f"outputs {outs} out of range for a network with {self.num_outputs} outputs")
        values: list[np.ndarray] = []
        model_out: list[np.ndarray] = []
        step = max(1, self.settings.frames_per_pass)
        with torch.no_grad():
            for lo, hi in _spans(x_all.shape[0], step):
                phi, out = self._explain_batch(x_all[lo:hi], outs)
                values.append(phi)
                model_out.append(out)
        return Attributions(
            values=np.concatenate(values),
            outputs=outs,
            expected=self.expected_value[list(outs)].astype(np.float64),
            model_output=np.concatenate(model_out).astype(np.float64),
        )

    def _explain_batch(self, x: torch.Tensor, outs: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        b, k, n = x.shape[0], len(outs), self.background_size
        y, frame_saved = self.program.forward(x)
        total = torch.zeros((b, k, *x.shape[1:]), dtype=self.dtype, device=self.device)
        chunk = self._bg_chunk(rows_per_bg=b * k)
        onehot = torch.zeros((b, k, 1, self.num_outputs), dtype=self.dtype, device=self.device)
        for i, o in enumerate(outs):
            onehot[:, i, 0, o] = 1.0
        for lo, hi, bg_saved in self._background_chunks(chunk):
            for clo, chi in _spans(hi - lo, chunk):
                sub = (
                    [_slice_saved(s, clo, chi) for s in bg_saved] if (clo, chi) != (0, hi - lo) else bg_saved
                )
                g = RowGrads(onehot.expand(b, k, chi - clo, self.num_outputs).contiguous())
                ref = self.background[lo + clo : lo + chi]
                total += self.program.attribute(g, frame_saved, sub, x, ref)
        phi = (total / n).to(torch.float32).cpu().numpy()
        out = y[:, list(outs)].cpu().numpy()
        return phi, out


def _saved_bytes(saved: Sequence[Saved]) -> int:
    """Bytes held by saved activations, each storage counted once (a ReLU's input is the pool's output)."""
    seen: dict[int, int] = {}
    for s in saved:
        for t in (s.x, s.y, s.aux):
            if t is not None:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _slice_saved(s: Saved, lo: int, hi: int) -> Saved:
    return Saved(
        x=None if s.x is None else s.x[lo:hi],
        y=None if s.y is None else s.y[lo:hi],
        aux=None if s.aux is None else s.aux[lo:hi],
    )


def _spans(n: int, step: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)
