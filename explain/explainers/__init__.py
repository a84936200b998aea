"""The explainer registry: one module per attribution method, one line here each.

`car explain --method` and `car explain-image --method` take their choices from `EXPLAINERS`. Each
module defines `make(context) -> Explainer`; it is imported only when its method is used, so `car --help`
stays fast and no method's heavy imports load for another.

To add a method: write `explain/explainers/<name>.py` with an `Explainer` subclass and `make`, add its line
below; `tests/test_explainers.py` runs every registered method on a tiny drive log.
"""

from __future__ import annotations

import importlib

from explain.errors import ExplainError
from explain.explainers.base import ExplainContext, Explainer, Explanation

EXPLAINERS: dict[str, str] = {
    "deepshap": "explain.explainers.deepshap",
    "integrated-gradients": "explain.explainers.integrated_gradients",
    "gradcam": "explain.explainers.gradcam",
    "occlusion": "explain.explainers.sliding_window",
}
DEFAULT_METHOD = "deepshap"

__all__ = ["DEFAULT_METHOD", "EXPLAINERS", "ExplainContext", "Explainer", "Explanation", "build_explainer"]


def build_explainer(method: str, context: ExplainContext) -> Explainer:
    """The registered method `method` for this network and background."""
    if method not in EXPLAINERS:
        raise ExplainError(f"--method {method!r}: choose one of {', '.join(EXPLAINERS)}")
    module = importlib.import_module(EXPLAINERS[method])
    explainer: Explainer = module.make(context)
    return explainer
