"""The references the DeepSHAP engine is checked and timed against (tests, `python -m bench explain`).

Real shap on an equivalent rewritten copy of a network, and Captum's DeepLiftShap on the same copy.

shap.DeepExplainer fails on stock ResNet/MobileNet (in-place ReLUs, `out += identity`, one ReLU module
called several times). The copy computes the same function with every activation its own non-in-place
module and every addition an `Add` module, which is what shap's hooks need. shap's rule table lacks ReLU6,
Hardswish, Hardsigmoid and SiLU; they are registered as nonlinear_1d (shap's rule for every activation it
knows) while the reference runs.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

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
}


class Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def rewritten_copy(model: nn.Module) -> nn.Module:
    """The same function, traced with torch.fx, every activation call (module or functional, softmax
    included) its own non-in-place module and every addition an `Add` module (shap does not hook
    functions, and would overwrite a reused module's saved activations)."""
    import operator

    gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    counter = 0
    for node in list(gm.graph.nodes):
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


@contextlib.contextmanager
def shap_knows_all_activations() -> Iterator[None]:
    from shap.explainers._deep import deep_pytorch

    handler = deep_pytorch.op_handler
    saved = dict(handler)
    for name in EXTRA_ACTIVATIONS:
        handler[name] = deep_pytorch.nonlinear_1d
    try:
        yield
    finally:
        handler.clear()
        handler.update(saved)


def shap_values(model: nn.Module, background: torch.Tensor, frames: torch.Tensor) -> np.ndarray:
    """Real shap on the rewritten copy, as (frames, outputs, C, H, W)."""
    import shap

    with shap_knows_all_activations():
        values = shap.DeepExplainer(rewritten_copy(model), background).shap_values(
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
