"""Exact DeepSHAP for graph networks (ResNet, MobileNet, VGG, …), traced with torch.fx.

The chain engine (`explain/deepshap.py`) walks a chain of leaf modules. A torchvision ResNet adds a block's
input to its output, a MobileNetV3 multiplies a feature map by its own squeeze-excitation scale and reuses
one in-place ReLU module several times; `shap.DeepExplainer` itself fails on all three. Here the network is
traced with `torch.fx` into a graph of calls (modules, functions, tensor methods) and each call gets the
rule shap would apply to it if it were written as its own module (shap's `deep_pytorch.py`), except in the
two places where shap's rules do not add up (overlapping max-pool windows, products):

- nonlinear_1d for elementwise activations (ReLU, ReLU6, Hardswish, Hardsigmoid, SiLU, GELU, Sigmoid, Tanh,
  …, module or functional) and for Softmax (shap's rule for `nn.Softmax`: the elementwise Δout/Δin, the
  ordinary gradient where |Δin| < 1e-6);
- maxpool for max-pooling (the chain engine's rule: shap's, except that where overlapping windows pick
  the same input position their shares are summed, which shap's unpooling does not do);
- the ordinary gradient for everything linear (convolutions, BatchNorm in eval, average pooling, additions,
  concatenation, reshapes, dropout in eval);
- for a product of two tensors that both depend on the input (a squeeze-excitation scale × its feature
  map) the exact Shapley split of the product (`ProductNode`). shap hooks modules only, so it gives such a
  `*` autograd's gradient, per row, from that row's own values, which does not add up to f(x) − E f.

Every call is its own node, so a module used twice keeps two sets of activations (shap, which stores them
on the module, would keep only the last), and in-place operations (`ReLU(inplace=True)`, `out += identity`,
`x.relu_()`) are run out of place on a copy of the network.

The schedule is the chain engine's: the frame runs forward once, the background's activations once per
audit, and only the background rows (frames × outputs × background) run backward; the frame rows' own
gradient (which only shap's max-pool rule reads) is tracked only on nodes that lead back to a max-pool.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from explain.deepshap import (
    ACTIVATION_FALLBACK,
    RULES,
    ActivationRule,
    LayerRule,
    MaxPool2dRule,
    ReLURule,
    RowGrads,
    Saved,
    SigmoidRule,
    _lead,
    out_of_place,
)
from explain.errors import ExplainError

Lead = tuple[int, int, int]


def _sum_to(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Undo broadcasting: sum `t` (lead + out) down to lead + `shape` (per-sample shape of an input)."""
    lead = tuple(t.shape[:3])
    want = (*lead, *shape)
    return t if tuple(t.shape) == want else t.sum_to_size(want)


def _add_grads(a: RowGrads | None, b: RowGrads) -> RowGrads:
    if a is None:
        return b
    if a.frame is None and b.frame is None:
        return RowGrads(a.bg + b.bg)
    return RowGrads(a.bg + b.bg, a.frame_or_bg() + b.frame_or_bg())


# --------------------------------------------------------------------------------------------- rules


class NodeRule(ABC):
    """How one call of the traced graph takes part in DeepLIFT: forward (saving what backward reads) and
    backward from the gradient at its output to the gradients at its input-dependent tensor inputs."""

    reads_frame_rows = False  # True for max-pool: its rule reads the frame rows' own gradient

    def __init__(self, call: Callable[[list[Any]], Any]) -> None:
        self.call = call  # inputs (the node's input-dependent values, in `deps` order) → output

    def forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, Saved]:
        y = self.call(inputs)
        return y, self.save(inputs, y)

    def save(self, inputs: list[torch.Tensor], y: torch.Tensor) -> Saved:
        return Saved()

    @abstractmethod
    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        """One gradient per input-dependent input (None: it gets nothing)."""


class ModuleNode(NodeRule):
    """A single-input call served by one of the chain engine's layer rules."""

    def __init__(self, call: Callable[[list[Any]], Any], rule: LayerRule) -> None:
        super().__init__(call)
        self.rule = rule
        self.reads_frame_rows = isinstance(rule, MaxPool2dRule)

    def forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, Saved]:
        return self.rule.forward(inputs[0])

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        return [self.rule.backward(g, frame, bg, in_shapes[0])]


class ReshapeNode(NodeRule):
    """flatten / view / reshape / contiguous / (un)squeeze / Flatten / Dropout / Identity: the gradient,
    reshaped to the input (the element order within a sample is unchanged)."""

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        lead = tuple(g.bg.shape[:3])
        shape = (*lead, *in_shapes[0])
        return [RowGrads(g.bg.reshape(shape), None if g.frame is None else g.frame.reshape(shape))]


class SumNode(NodeRule):
    """a + b, a − b, torch.add/sub (either side may be a constant): the gradient, signed, to each input."""

    def __init__(self, call: Callable[[list[Any]], Any], signs: list[float]) -> None:
        super().__init__(call)
        self.signs = signs  # one per input-dependent input (x + x gives one input with sign 2)

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        out: list[RowGrads | None] = []
        for sign, shape in zip(self.signs, in_shapes, strict=True):
            bg_g = _sum_to(g.bg if sign == 1 else g.bg * sign, shape)
            fr = None if g.frame is None else _sum_to(g.frame if sign == 1 else g.frame * sign, shape)
            out.append(RowGrads(bg_g, fr))
        return out


class CatNode(NodeRule):
    """torch.cat: the gradient, split along the concatenated dimension."""

    def __init__(self, call: Callable[[list[Any]], Any], dim: int, parts: list[int | None]) -> None:
        super().__init__(call)
        self.dim = dim  # of the network's tensors (batch = 0)
        self.parts = parts  # per concatenated piece: the index of its input, None for a constant

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        dim = self.dim + 2 if self.dim >= 0 else self.dim
        sizes = [int(s) for s in self.sizes]
        out: list[RowGrads | None] = [None] * len(in_shapes)
        bg_parts = torch.split(g.bg, sizes, dim)
        fr_parts = None if g.frame is None else torch.split(g.frame, sizes, dim)
        for i, which in enumerate(self.parts):
            if which is None:
                continue
            piece = RowGrads(bg_parts[i], None if fr_parts is None else fr_parts[i])
            out[which] = _add_grads(out[which], piece)
        return out

    def forward(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, Saved]:
        y, pieces = self.call(inputs)
        self.sizes = [p.shape[self.dim] for p in pieces]
        return y, Saved()


class ScaleNode(NodeRule):
    """x · c or x / c with c independent of the input: the gradient times c (or over c)."""

    def __init__(
        self, call: Callable[[list[Any]], Any], factor: Callable[[], torch.Tensor], divide: bool
    ) -> None:
        super().__init__(call)
        self.factor, self.divide = factor, divide

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        c = self.factor()  # broadcasts from the right, as against the network's (N, *f) tensors

        def scale(t: torch.Tensor) -> torch.Tensor:
            return _sum_to(t / c if self.divide else t * c, in_shapes[0])

        return [RowGrads(scale(g.bg), None if g.frame is None else scale(g.frame))]


class ProductNode(NodeRule):
    """a · b, both depending on the input (a squeeze-excitation scale times its feature map): the exact
    two-player Shapley split of the product.

    With references a′, b′: a gets the multiplier (b + b′)/2 and b gets (a + a′)/2 (frame value plus that
    background row's value, halved), so Δa·(b + b′)/2 + Δb·(a + a′)/2 = ab − a′b′ exactly. shap hooks
    modules only and gives a `*` in `forward` autograd's gradient, row by row (g·b′ to a, g·a′ to b), which
    does not add up. The multipliers are the same for a pair's frame row and background row, so the frame
    rows' gradient (kept only for max-pools, see the module docstring) is scaled by them too, never forked.
    """

    def save(self, inputs: list[torch.Tensor], y: torch.Tensor) -> Saved:
        return Saved(x=inputs[0], aux=inputs[1])

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        assert frame.x is not None and frame.aux is not None and bg.x is not None and bg.aux is not None
        out: list[RowGrads | None] = []
        for other_f, other_b, shape in ((frame.aux, bg.aux, in_shapes[0]), (frame.x, bg.x, in_shapes[1])):
            multiplier = (_lead(other_f, "frame") + _lead(other_b, "bg")) / 2
            fr_g = None if g.frame is None else _sum_to(g.frame * multiplier, shape)
            out.append(RowGrads(_sum_to(g.bg * multiplier, shape), fr_g))
        return out


class SquareNode(ProductNode):
    """x · x (one input used twice): the product rule with a = b = x, i.e. the multiplier x + x′
    (Δx·(x + x′) = x² − x′²)."""

    def save(self, inputs: list[torch.Tensor], y: torch.Tensor) -> Saved:
        return Saved(x=inputs[0], aux=inputs[0])

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        a, b = super().backward(g, frame, bg, in_shapes * 2)
        assert a is not None and b is not None
        return [_add_grads(a, b)]


class LinearCallNode(NodeRule):
    """Any other linear call (average pooling, mean, padding, interpolation, slicing, permutes): the
    ordinary gradient, by autograd through the call at zero (a linear map's gradient needs no point)."""

    def backward(
        self, g: RowGrads, frame: Saved, bg: Saved, in_shapes: list[tuple[int, ...]]
    ) -> list[RowGrads | None]:
        lead = tuple(g.bg.shape[:3])
        grads_bg = self._vjp(g.bg, in_shapes)
        grads_fr = None if g.frame is None else self._vjp(g.frame, in_shapes)
        out: list[RowGrads | None] = []
        for i, gb in enumerate(grads_bg):
            fr = None if grads_fr is None else grads_fr[i].reshape((*lead, *in_shapes[i]))
            out.append(RowGrads(gb.reshape((*lead, *in_shapes[i])), fr))
        return out

    def _vjp(self, g: torch.Tensor, in_shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
        rows = int(g.shape[0] * g.shape[1] * g.shape[2])
        with torch.enable_grad():
            zs = [
                torch.zeros((rows, *s), dtype=g.dtype, device=g.device, requires_grad=True) for s in in_shapes
            ]
            y = self.call(zs)
            grads = torch.autograd.grad(y, zs, g.reshape((rows, *g.shape[3:])), allow_unused=True)
        return [torch.zeros_like(z) if gr is None else gr for gr, z in zip(grads, zs, strict=True)]


class SoftmaxRule(ActivationRule):
    """shap's rule for `nn.Softmax` (nonlinear_1d): Δout/Δin elementwise; where |Δin| < 1e-6 the ordinary
    gradient, which for softmax is the row's Jacobian-vector product y ⊙ (g − Σ g·y)."""

    def __init__(self, module: nn.Module, dim: int) -> None:
        super().__init__(module)
        self.dim = dim + 2 if dim >= 0 else dim  # in the (B, K, c, *f) layout

    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        assert frame.x is not None and frame.y is not None and bg.x is not None and bg.y is not None
        fx, fy = _lead(frame.x, "frame"), _lead(frame.y, "frame")
        bx, by = _lead(bg.x, "bg"), _lead(bg.y, "bg")
        delta_in = fx - bx
        ratio = (fy - by) / delta_in
        fallback = torch.abs(delta_in) < ACTIVATION_FALLBACK
        if not bool(fallback.any()):
            return RowGrads(g.bg * ratio, None if g.frame is None else g.frame * ratio)
        d = self.dim

        def jvp(grad: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return y * (grad - (grad * y).sum(d, keepdim=True))

        g_fr = g.frame_or_bg()
        return RowGrads(
            torch.where(fallback, jvp(g.bg, by), g.bg * ratio),
            torch.where(fallback, jvp(g_fr, fy), g_fr * ratio),
        )


class BatchNormRule(LayerRule):
    """BatchNorm in eval (running statistics): a per-channel scale of the gradient (shap's linear_1d)."""

    def backward(self, g: RowGrads, frame: Saved, bg: Saved, in_shape: tuple[int, ...]) -> RowGrads:
        m = self.module
        assert isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        scale = scale.reshape((-1,) + (1,) * (len(in_shape) - 1)).to(g.bg.dtype)
        return RowGrads(g.bg * scale, None if g.frame is None else g.frame * scale)


class _Fn(nn.Module):
    """A function as a module, so the chain engine's activation rules can call it."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# --------------------------------------------------------------------------------------------- registry

# Elementwise activations beyond the chain engine's: shap's table lacks them (it would pass the plain
# gradient); as modules of their own they are nonlinear_1d, like every activation shap knows.
EXTRA_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU6,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.Mish,
    nn.Hardtanh,
)

ACTIVATION_FUNCTIONS: dict[Any, type[ActivationRule]] = {
    F.relu: ReLURule,
    torch.relu: ReLURule,
    "relu": ReLURule,
    torch.sigmoid: SigmoidRule,
    F.sigmoid: SigmoidRule,
    "sigmoid": SigmoidRule,
    torch.tanh: ActivationRule,
    F.tanh: ActivationRule,
    "tanh": ActivationRule,
    F.relu6: ActivationRule,
    F.hardswish: ActivationRule,
    F.hardsigmoid: ActivationRule,
    F.silu: ActivationRule,
    F.gelu: ActivationRule,
    F.elu: ActivationRule,
    F.leaky_relu: ActivationRule,
    F.mish: ActivationRule,
    F.hardtanh: ActivationRule,
}
SOFTMAX_FUNCTIONS: tuple[Any, ...] = (F.softmax, torch.softmax, "softmax")
RESHAPES: tuple[Any, ...] = (
    torch.flatten,
    "flatten",
    "view",
    "reshape",
    torch.reshape,
    "contiguous",
    "squeeze",
    "unsqueeze",
    torch.squeeze,
    torch.unsqueeze,
    F.dropout,
    F.dropout2d,
)
LINEAR_CALLS: tuple[Any, ...] = (
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool1d,
    F.avg_pool2d,
    F.avg_pool1d,
    torch.mean,
    "mean",
    torch.sum,
    "sum",
    F.pad,
    F.interpolate,
    operator.getitem,
    torch.transpose,
    "transpose",
    "permute",
    torch.permute,
    operator.neg,
    "neg",
    torch.neg,
)
SUMS: dict[Any, float] = {
    operator.add: 1.0,
    torch.add: 1.0,
    "add": 1.0,
    operator.sub: -1.0,
    torch.sub: -1.0,
    "sub": -1.0,
}
PRODUCTS: tuple[Any, ...] = (operator.mul, torch.mul, "mul")
DIVISIONS: tuple[Any, ...] = (operator.truediv, torch.div, "div")
IN_PLACE: dict[Any, Any] = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
}


def _module_rule(module: nn.Module) -> LayerRule | None:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        if module.running_var is None:
            return None  # batch statistics even in eval: not a per-sample map
        return BatchNormRule(module)
    if isinstance(module, nn.Softmax):
        return SoftmaxRule(module, module.dim if module.dim is not None else 1)
    if isinstance(module, EXTRA_ACTIVATIONS):
        return ActivationRule(module)
    factory = RULES.get(type(module))
    return None if factory is None else factory(module)


# --------------------------------------------------------------------------------------------- graph


@dataclass(slots=True)
class Step:
    """One call of the traced graph."""

    node: fx.Node
    run: Callable[[Callable[[fx.Node], Any]], Any]  # the plain call, reading inputs through a lookup
    rule: NodeRule | None = None  # None: a call whose value does not carry gradient (sizes, constants)
    deps: tuple[fx.Node, ...] = ()  # its input-dependent tensor inputs, in the rule's order
    in_shapes: tuple[tuple[int, ...], ...] = ()
    frame_rows: bool = False  # whether the frame rows' gradient at its output can matter


def _target_key(node: fx.Node) -> Any:
    if node.op == "call_method":
        name = str(node.target)
        return name[:-1] if name.endswith("_") and not name.endswith("__") else name
    return IN_PLACE.get(node.target, node.target)


def _out_of_place(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: (False if k == "inplace" else v) for k, v in kwargs.items()}


class GraphProgram:
    """A traced network with a DeepLIFT rule per call; `forward` and `attribute` serve DeepShapEngine."""

    def __init__(self, model: nn.Module, example: torch.Tensor) -> None:
        self.module = out_of_place(model)
        try:
            self.graph_module = fx.symbolic_trace(self.module)
        except Exception as exc:  # fx raises many kinds (TraceError, TypeError from control flow, …)
            raise ExplainError(
                f"the network cannot be traced with torch.fx ({type(exc).__name__}: {exc}); DeepSHAP needs a "
                "forward without data-dependent control flow"
            ) from None
        nodes = list(self.graph_module.graph.nodes)
        placeholders = [n for n in nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ExplainError(
                f"the network takes {len(placeholders)} inputs; DeepSHAP here explains one image input"
            )
        self.input = placeholders[0]
        self.output = next(n for n in nodes if n.op == "output")
        result = self.output.args[0]
        if not isinstance(result, fx.Node):
            raise ExplainError("the network returns several values; DeepSHAP needs one output tensor")
        self.result = result
        self.steps: list[Step] = []
        self.constants: dict[fx.Node, Any] = {}
        self._build(nodes, example)

    # -- building

    def _build(self, nodes: list[fx.Node], example: torch.Tensor) -> None:
        dependent: set[fx.Node] = {self.input}
        frame_rows: dict[fx.Node, bool] = {self.input: False}
        env: dict[fx.Node, Any] = {self.input: example}
        self._env = env
        for node in nodes:
            if node.op in ("placeholder", "output"):
                continue
            run = self._runner(node)
            with torch.no_grad():
                value = run(self._lookup)
            env[node] = value
            depends = any(a in dependent for a in node.all_input_nodes)
            if not depends:
                self.constants[node] = value
                continue
            dependent.add(node)
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                self.steps.append(Step(node, run))  # sizes and the like: recomputed, never differentiated
                continue
            deps = tuple(
                a for a in node.all_input_nodes if a in dependent and isinstance(env[a], torch.Tensor)
            )
            rule = self._rule(node, deps)
            shapes = tuple(tuple(int(s) for s in env[d].shape[1:]) for d in deps)
            reads = rule.reads_frame_rows or any(frame_rows.get(d, False) for d in deps)
            frame_rows[node] = reads
            self.steps.append(Step(node, run, rule, deps, shapes, reads))
        self._frame_rows_of = frame_rows
        if self.result not in dependent or not isinstance(env[self.result], torch.Tensor):
            raise ExplainError("the network's output does not depend on its input")
        self.out_shape = tuple(env[self.result].shape[1:])
        self.widest = max(
            [
                int(env[s.node].numel() // max(1, env[s.node].shape[0]))
                for s in self.steps
                if s.rule is not None
            ]
            + [int(example[0].numel())]
        )

    def _lookup(self, node: fx.Node) -> Any:
        """A value of the current forward pass (or a constant of the network)."""
        return self._env[node] if node in self._env else self.constants[node]

    def _runner(self, node: fx.Node) -> Callable[[Callable[[fx.Node], Any]], Any]:
        """The node's plain call, reading its inputs through a lookup function."""
        gm = self.graph_module
        if node.op == "get_attr":
            value = _get_attr(gm, str(node.target))
            return lambda get: value
        kwargs = _out_of_place(dict(node.kwargs))
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            return lambda get: module(*fx.node.map_arg(node.args, get), **fx.node.map_arg(kwargs, get))
        key = _target_key(node)
        if node.op == "call_method":

            def method(get: Callable[[fx.Node], Any]) -> Any:
                this = fx.node.map_arg(node.args[0], get)
                return getattr(this, key)(
                    *fx.node.map_arg(node.args[1:], get), **fx.node.map_arg(kwargs, get)
                )

            return method
        return lambda get: key(*fx.node.map_arg(node.args, get), **fx.node.map_arg(kwargs, get))

    def _call_with(self, node: fx.Node, deps: tuple[fx.Node, ...]) -> Callable[[list[Any]], Any]:
        """The node's call as a function of its input-dependent tensor inputs (the rest: the current pass)."""
        run = self._runner(node)

        def call(inputs: list[Any]) -> Any:
            given = dict(zip(deps, inputs, strict=True))
            return run(lambda n: given[n] if n in given else self._lookup(n))

        return call

    def _rule(self, node: fx.Node, deps: tuple[fx.Node, ...]) -> NodeRule:
        call = self._call_with(node, deps)
        if node.op == "call_module":
            module = self.graph_module.get_submodule(str(node.target))
            if isinstance(module, nn.Flatten | nn.Identity | nn.Dropout | nn.Dropout2d | nn.Unflatten):
                return ReshapeNode(call)
            rule = _module_rule(module)
            if rule is None or len(deps) != 1:
                known = {t.__name__ for t in RULES} | {t.__name__ for t in EXTRA_ACTIVATIONS} | {"Softmax"}
                raise ExplainError(
                    f"call {node.name!r} of module {node.target!r} ({type(module).__name__}) has no DeepLIFT "
                    f"rule; supported modules: {sorted(known)}"
                )
            return ModuleNode(call, rule)
        return self._function_rule(node, deps, call)

    def _function_rule(
        self, node: fx.Node, deps: tuple[fx.Node, ...], call: Callable[[list[Any]], Any]
    ) -> NodeRule:
        key = _target_key(node)
        args = node.args
        if key in ACTIVATION_FUNCTIONS and len(deps) == 1:
            rule_type = ACTIVATION_FUNCTIONS[key]
            return ModuleNode(call, rule_type(_Fn(lambda z: call([z]))))
        if key in SOFTMAX_FUNCTIONS and len(deps) == 1:
            dim = node.kwargs.get("dim", args[1] if len(args) > 1 else None)
            if not isinstance(dim, int):
                raise ExplainError(f"call {node.name!r}: softmax needs an explicit dim")
            return ModuleNode(call, SoftmaxRule(_Fn(lambda z: call([z])), dim))
        if key in RESHAPES and len(deps) == 1:
            return ReshapeNode(call)
        arithmetic = self._arithmetic_rule(key, node, deps, call)
        if arithmetic is not None:
            return arithmetic
        if key is torch.cat or key == "cat":
            return self._cat_rule(node, deps)
        if key in LINEAR_CALLS:
            return LinearCallNode(call)
        name = getattr(key, "__name__", str(key))
        raise ExplainError(
            f"call {node.name!r} ({name}) has no DeepLIFT rule here; rewrite it as a supported module"
        )

    def _arithmetic_rule(
        self, key: Any, node: fx.Node, deps: tuple[fx.Node, ...], call: Callable[[list[Any]], Any]
    ) -> NodeRule | None:
        """+, −, ×, ÷ (the last by a constant only); None for anything else."""
        args = node.args
        if key in SUMS and "alpha" not in node.kwargs:
            signs = [0.0] * len(deps)
            for i, a in enumerate(args[:2]):
                if a in deps:
                    signs[deps.index(a)] += 1.0 if i == 0 else SUMS[key]
            return SumNode(call, signs)
        if key in PRODUCTS and len(args) == 2:
            a, b = args
            if a in deps and b in deps:
                return SquareNode(call) if a is b else ProductNode(call)
            return ScaleNode(call, self._constant(b if a in deps else a), divide=False)
        if key in DIVISIONS and len(args) == 2 and args[0] in deps and args[1] not in deps:
            return ScaleNode(call, self._constant(args[1]), divide=True)
        return None

    def _constant(self, arg: Any) -> Callable[[], Any]:
        """A factor independent of the input (a constant of the network or a plain number)."""
        return lambda: self._lookup(arg) if isinstance(arg, fx.Node) else arg

    def _cat_rule(self, node: fx.Node, deps: tuple[fx.Node, ...]) -> NodeRule:
        pieces = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if not isinstance(pieces, list | tuple) or not isinstance(dim, int):
            raise ExplainError(f"call {node.name!r}: torch.cat needs a list of tensors and an integer dim")
        parts = [deps.index(p) if isinstance(p, fx.Node) and p in deps else None for p in pieces]

        def call(inputs: list[Any]) -> Any:
            given = dict(zip(deps, inputs, strict=True))
            values: list[torch.Tensor] = [
                (given[p] if p in given else self._lookup(p)) if isinstance(p, fx.Node) else p  # type: ignore[misc]
                for p in pieces
            ]
            return torch.cat(values, dim), values

        return CatNode(call, dim, parts)

    # -- running

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Saved]]:
        env: dict[fx.Node, Any] = {self.input: x}
        self._env = env
        saved: list[Saved] = []
        for step in self.steps:
            if step.rule is None:
                env[step.node] = step.run(self._lookup)
                continue
            y, s = step.rule.forward([env[d] for d in step.deps])
            env[step.node] = y
            saved.append(s)
        return env[self.result], saved

    def attribute(
        self, g: RowGrads, frame: list[Saved], bg: list[Saved], x: torch.Tensor, ref: torch.Tensor
    ) -> torch.Tensor:
        """Run `g` (at the output) back through every call; Σ over rows of (frame − reference) ⊙ gradient."""
        grads: dict[fx.Node, RowGrads] = {self.result: g}
        ruled = [s for s in self.steps if s.rule is not None]
        for step, fs, bs in zip(reversed(ruled), reversed(frame), reversed(bg), strict=True):
            out = grads.pop(step.node, None)
            if out is None:
                continue
            assert step.rule is not None
            for dep, gin in zip(
                step.deps, step.rule.backward(out, fs, bs, list(step.in_shapes)), strict=True
            ):
                if gin is None:
                    continue
                keep = gin.frame is None or self._frame_rows(dep)
                grads[dep] = _add_grads(grads.get(dep), gin if keep else RowGrads(gin.bg))
        at_input = grads.get(self.input)
        if at_input is None:
            return torch.zeros((g.bg.shape[0], g.bg.shape[1], *x.shape[1:]), dtype=x.dtype, device=x.device)
        return (at_input.bg * (x[:, None, None] - ref[None, None])).sum(2)

    def _frame_rows(self, node: fx.Node) -> bool:
        return self._frame_rows_of.get(node, False)


def _get_attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value
