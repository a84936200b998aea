"""The references the DeepSHAP engine is checked and timed against (tests, `python -m bench explain`).

Real shap on an equivalent rewritten copy of a network, and Captum's DeepLiftShap on the same copy.

shap.DeepExplainer fails on stock ResNet/MobileNet (in-place ReLUs, `out += identity`, one ReLU module
called several times). The copy computes the same function with every activation its own non-in-place
module, every addition an `Add` module and every product of two input-dependent tensors a `Mul` module,
which is what shap's hooks need. shap's rule table lacks ReLU6, Hardswish, Hardsigmoid and SiLU; they are
registered as nonlinear_1d (shap's rule for every activation it knows) while the reference runs.

shap's own rules are not additive in two places, and the engine does not copy them there; the reference
registers the engine's two rules into shap's handler table the same way (`fixed_rules=True`, the default):

- MaxPool2d: shap unpools with `max_unpool2d`, which keeps one value where overlapping windows pick the
  same input position; `summing_maxpool` adds them (scatter-add) instead.
- Mul: shap hooks no functions, so `a * b` gets autograd's gradient per row; `shapley_product` gives a
  the multiplier (b + b′)/2 and b the multiplier (a + a′)/2, so that Δa·m_a + Δb·m_b = ab − a′b′.

`fixed_rules=False` runs stock shap (its handlers unchanged, products left to autograd) on the same copy.
"""

from __future__ import annotations

import contextlib
import copy
import operator
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

EXTRA_ACTIVATIONS = ("ReLU6", "Hardswish", "Hardsigmoid", "SiLU")


FUNCTIONAL_ACTIVATIONS: dict[object, type[nn.Module]] = {
    F.relu: nn.ReLU,
    torch.relu: nn.ReLU,
    F.silu: nn.SiLU,
    F.hardswish: nn.Hardswish,
    F.hardsigmoid: nn.Hardsigmoid,
    torch.sigmoid: nn.Sigmoid,
    F.sigmoid: nn.Sigmoid,
    torch.tanh: nn.Tanh,
    F.tanh: nn.Tanh,
}


PRODUCTS: tuple[object, ...] = (operator.mul, operator.imul, torch.mul, "mul", "mul_")


class Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Mul(nn.Module):
    """a · b of two input-dependent tensors. It keeps both factors itself: shap's forward hook saves only a
    module's first input (and deletes `x`/`y` before each forward), and the product rule needs both."""

    factors: tuple[torch.Tensor, torch.Tensor]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.factors = (a.detach(), b.detach())
        return a * b


def _input_dependent(graph: fx.Graph) -> set[fx.Node]:
    dependent: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op == "placeholder" or any(a in dependent for a in node.all_input_nodes):
            dependent.add(node)
    return dependent


def _is_product(node: fx.Node, dependent: set[fx.Node]) -> bool:
    """Whether `node` multiplies two input-dependent tensors (`a * b`, `torch.mul(a, b)`, `a.mul(b)`)."""
    if node.op not in ("call_function", "call_method") or node.kwargs or len(node.args) != 2:
        return False
    target = node.target if node.op == "call_function" else str(node.target)
    return target in PRODUCTS and all(a in dependent for a in node.args)


def rewritten_copy(model: nn.Module, products: bool = True) -> nn.Module:
    """The same function, traced with torch.fx, every activation call (module or functional, softmax
    included) its own non-in-place module, every addition an `Add` module and (with `products`) every
    product of two input-dependent tensors a `Mul` module (shap does not hook functions, and would
    overwrite a reused module's saved activations)."""
    gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    dependent = _input_dependent(gm.graph)
    counter = 0
    for node in list(gm.graph.nodes):
        if products and _is_product(node, dependent):
            name = f"mul_{counter}"
            counter += 1
            gm.add_submodule(name, Mul())
            node.op, node.target = "call_module", name
            continue
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if hasattr(module, "inplace"):
                fresh = copy.deepcopy(module)
                fresh.inplace = False  # type: ignore[assignment]
                name = f"act_{counter}"
                counter += 1
                gm.add_submodule(name, fresh)
                node.target = name
        elif node.op == "call_function" and node.target in (operator.add, operator.iadd):
            name = f"add_{counter}"
            counter += 1
            gm.add_submodule(name, Add())
            node.op, node.target = "call_module", name
        elif node.op == "call_function" and node.target in FUNCTIONAL_ACTIVATIONS:
            name = f"fn_{counter}"
            counter += 1
            gm.add_submodule(name, FUNCTIONAL_ACTIVATIONS[node.target]())
            node.op, node.target, node.args, node.kwargs = "call_module", name, node.args[:1], {}
        elif node.op == "call_function" and node.target in (torch.softmax, F.softmax):
            name = f"softmax_{counter}"
            counter += 1
            gm.add_submodule(
                name, nn.Softmax(dim=node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 1))
            )
            node.op, node.target, node.args, node.kwargs = "call_module", name, node.args[:1], {}
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


def summing_maxpool(
    module: nn.MaxPool2d, grad_input: tuple[torch.Tensor | None, ...], grad_output: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor | None, ...]:
    """shap's maxpool handler with the unpooling summed: each window's Δout share goes to the frame's
    argmax (max(y, y′) − y′) and the reference's argmax (y − max(y, y′)), shares that land on one input
    position are added (shap's `max_unpool2d` keeps one), and the sum is divided by Δin (0 where
    |Δin| < 1e-7). The batch is shap's: frames in the first half, references in the second; `module.x`
    and `module.y` are saved by shap's forward hook (it saves them for handlers named "maxpool")."""
    x, y = module.get_parameter("x").detach(), module.get_parameter("y").detach()
    half = x.shape[0] // 2
    delta_in = x[:half] - x[half:]
    frame_y, ref_y = torch.chunk(y, 2)
    cross = torch.maximum(frame_y, ref_y)
    with torch.no_grad():
        shares = grad_output[0] * torch.cat([cross - ref_y, frame_y - cross])
        _, idx = F.max_pool2d(
            x, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, True
        )
        summed = torch.zeros_like(x).flatten(2)
        summed.scatter_add_(2, idx.flatten(2), shares.flatten(2))
        at_frame_max, at_ref_max = torch.chunk(summed.view_as(x), 2)
        multiplier = torch.where(
            torch.abs(delta_in) < 1e-7, torch.zeros_like(delta_in), (at_frame_max + at_ref_max) / delta_in
        )
    return (multiplier.repeat(2, *([1] * (x.ndim - 1))), *([None] * (len(grad_input) - 1)))


summing_maxpool.__name__ = "maxpool"  # shap's forward hook saves x and y for handlers of this name


def shapley_product(
    module: Mul, grad_input: tuple[torch.Tensor | None, ...], grad_output: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact Shapley split of a · b between its two factors: a gets (b + b′)/2, b gets (a + a′)/2,
    the same multiplier for a frame row and its reference row (broadcast factors summed back)."""
    a, b = module.factors
    g = grad_output[0]

    def multiplier(other: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        frame, ref = torch.chunk(other, 2)
        halves = ((frame + ref) / 2).repeat(2, *([1] * (other.ndim - 1)))
        return (g * halves).sum_to_size(like.shape)

    return multiplier(b, a), multiplier(a, b)


@contextlib.contextmanager
def shap_rules(fixed: bool = True) -> Iterator[None]:
    """shap's handler table while the reference runs: the extra activations as nonlinear_1d and, when
    `fixed`, the engine's additive max-pool and product rules."""
    from shap.explainers._deep import deep_pytorch

    handler: dict[str, Any] = deep_pytorch.op_handler
    saved = dict(handler)
    for name in EXTRA_ACTIVATIONS:
        handler[name] = deep_pytorch.nonlinear_1d
    if fixed:
        handler["MaxPool2d"] = summing_maxpool
        handler["Mul"] = shapley_product
    try:
        yield
    finally:
        handler.clear()
        handler.update(saved)


def shap_values(
    model: nn.Module, background: torch.Tensor, frames: torch.Tensor, fixed_rules: bool = True
) -> np.ndarray:
    """Real shap on the rewritten copy, as (frames, outputs, C, H, W): with the engine's additive max-pool
    and product rules (default) or, with `fixed_rules=False`, stock shap's."""
    import shap

    with shap_rules(fixed_rules):
        values = shap.DeepExplainer(rewritten_copy(model, products=fixed_rules), background).shap_values(
            frames, check_additivity=False
        )
    return np.asarray(values).transpose(0, 4, 1, 2, 3)


class Clone(nn.Module):
    """An identity that returns a new tensor (see `captum_values`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def with_clones(model: nn.Module) -> fx.GraphModule:
    """The rewritten copy with a `Clone` module between any two adjacent nonlinear modules (MaxPool → ReLU).

    Captum 0.9.0 hooks the output tensor of each nonlinear module; when one nonlinear module feeds another
    directly, the two hooks sit on the same autograd edge and fire in the wrong order, so the second module's
    multiplier is applied to a gradient the first has already rewritten (Captum issue #1104, fixed after
    0.9.0). A clone between them gives each hook its own tensor; the values are unchanged.
    """
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    gm = rewritten_copy(model)
    assert isinstance(gm, fx.GraphModule)

    def nonlinear(node: object) -> bool:
        return (
            isinstance(node, fx.Node)
            and node.op == "call_module"
            and type(gm.get_submodule(str(node.target))) in SUPPORTED_NON_LINEAR
        )

    counter = 0
    for node in list(gm.graph.nodes):
        if nonlinear(node) and nonlinear(node.args[0]):
            name = f"clone_{counter}"
            counter += 1
            gm.add_submodule(name, Clone())
            with gm.graph.inserting_before(node):
                clone = gm.graph.call_module(name, (node.args[0],))
            node.args = (clone, *node.args[1:])
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


def captum_values(
    model: nn.Module, background: torch.Tensor, frames: torch.Tensor, clones: bool = True
) -> np.ndarray:
    """Captum 0.9.0's DeepLiftShap on the rewritten copy (with clones unless told otherwise), as
    (frames, outputs, C, H, W)."""
    from captum.attr import DeepLiftShap

    net = with_clones(model) if clones else rewritten_copy(model)
    with torch.no_grad():
        outputs = int(net(background[:1]).shape[1])
    explainer = DeepLiftShap(net)
    per_output = [
        explainer.attribute(frames, baselines=background, target=k).detach().cpu().numpy()
        for k in range(outputs)
    ]
    return np.stack(per_output, axis=1)
