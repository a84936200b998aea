"""DeepSHAP: exactly shap.DeepExplainer's values, by the project's engine (`explain.deepshap`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explain.deepshap import DeepShapEngine
from explain.explainers.base import ExplainContext, Explainer, Explanation


class DeepShapExplainer(Explainer):
    name = "deepshap"
    summary = "exact DeepSHAP (shap.DeepExplainer's values) against every background frame; additive"

    def __init__(self, context: ExplainContext) -> None:
        self.engine = DeepShapEngine(context.network, context.background, context.device)
        self.frames_per_pass = max(1, self.engine.settings.frames_per_pass)

    def explain(self, frames: np.ndarray, outputs: Sequence[int]) -> Explanation:
        result = self.engine.explain(frames, outputs)
        return Explanation(result.values, result.outputs, result.expected, result.model_output)


def make(context: ExplainContext) -> Explainer:
    return DeepShapExplainer(context)
