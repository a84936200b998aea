"""The reference for graph networks: real shap on an equivalent rewritten copy of a torchvision network.

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
