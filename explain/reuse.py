"""What one process keeps between the drives it audits: the torch twin and the explainers built on it.

A fleet worker (a Ray actor or a local pool process) audits drive after drive of the same bundle against
the same background; loading the twin and building an explainer (DeepSHAP's background activations) once
per worker instead of once per drive is what makes the per-drive cost the explaining itself. Entries are
keyed by content (the bundle's manifest digest, the background's pixel hash), so a different bundle or
background is simply built anew; only the newest few entries are kept. The audit never changes a cached
twin (the sanity check randomises deep copies) and explainers keep no per-call state.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from explain.explainers import ExplainContext, Explainer
    from vision.bundle import ModelBundle

_T = TypeVar("_T")
KEEP = 6
"""Entries kept per kind: one drive's audit uses its method's explainer plus one per registered method for
the checks (4), so 6 keep a whole audit's explainers for the next drive of the same bundle."""


class _Recent:
    """A small mapping that keeps the KEEP most recently used entries."""

    def __init__(self) -> None:
        self._items: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], _T]) -> _T:
        if key in self._items:
            self._items.move_to_end(key)
        else:
            self._items[key] = build()
            while len(self._items) > KEEP:
                self._items.popitem(last=False)
        value: _T = self._items[key]  # type: ignore[assignment]
        return value

    def clear(self) -> None:
        self._items.clear()


_TWINS = _Recent()
_EXPLAINERS = _Recent()


def twin(bundle: ModelBundle, device: str) -> nn.Module:
    """The bundle's torch twin in its (GO, STOP) view, loaded once per process and device."""
    from vision.torch_model import load_go_stop_network

    key = (str(bundle.root.resolve()), bundle.sha256, device)
    return _TWINS.get(key, lambda: load_go_stop_network(bundle, device))


def explainer(method: str, context: ExplainContext, bundle: ModelBundle) -> Explainer:
    """`method` on `context`, built once per (method, bundle, network file, background, device).

    `context.network` must be `twin(bundle, context.device)`: a context on another network (the sanity
    check's randomised copies) builds its explainer with `build_explainer` directly."""
    from explain.explainers import build_explainer

    digest = hashlib.blake2b(np.ascontiguousarray(context.background).tobytes(), digest_size=16).hexdigest()
    key = (method, bundle.sha256, str(context.onnx), context.device, context.background.shape, digest)
    return _EXPLAINERS.get(key, lambda: build_explainer(method, context))


def forget() -> None:
    """Drop everything kept (tests; a worker that wants its memory back)."""
    _TWINS.clear()
    _EXPLAINERS.clear()
