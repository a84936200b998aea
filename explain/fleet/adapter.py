"""The fleet audit's only contact with `explain.audit`: its options, its entry point and its results.

`run_audit(AuditOptions)` is the one library entry point of `car explain`; what the fleet reads from its
result is named here (the drive's `--json` numbers, per-frame metrics by name), so a change in the audit's
result types is absorbed in this one module.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any

from explain.errors import ExplainError

if TYPE_CHECKING:
    from explain.audit import AuditOptions, AuditResult

FRAME_METRICS = ("stop_on_can", "can_area", "pointing_hit", "below_horizon")
"""Per-frame metrics the fleet report uses (None where a frame has no value, e.g. no can in view)."""


def audit_option_names() -> set[str]:
    from explain.audit import AuditOptions

    return {f.name for f in fields(AuditOptions)}


def methods_supported() -> bool:
    """Whether `car explain` takes `--method` (an explainer registry); otherwise only DeepSHAP exists."""
    return "method" in audit_option_names()


def make_options(values: dict[str, Any]) -> AuditOptions:
    """AuditOptions from the fleet's settings; `method` is forwarded only where the audit knows it."""
    from explain.audit import AuditOptions

    known = audit_option_names()
    method = values.get("method", "deepshap")
    if "method" not in known and method != "deepshap":
        raise ExplainError(f"--method {method}: this build's `car explain` has only deepshap")
    return AuditOptions(**{k: v for k, v in values.items() if k in known})


def run(options: AuditOptions) -> AuditResult:
    from explain.audit import run_audit

    return run_audit(options)


def numbers_json(result: AuditResult) -> dict[str, Any]:
    """What `car explain --json` prints for this result."""
    try:
        from explain.audit import audit_numbers_json  # type: ignore[attr-defined]
    except ImportError:
        return asdict(result.numbers)
    doc: dict[str, Any] = audit_numbers_json(result)
    return doc


def frame_metrics(frame: Any) -> dict[str, float | bool | None]:
    """The FRAME_METRICS of one audited frame."""
    metrics = getattr(frame, "metrics", None)
    if metrics is not None:  # a metric registry: values by name
        return {name: metrics.get(name) for name in FRAME_METRICS}
    focus, look = frame.focus, frame.look
    return {
        "stop_on_can": None if focus is None else focus.on_can,
        "can_area": None if focus is None else focus.can_area,
        "pointing_hit": None if focus is None else focus.pointing_hit,
        "below_horizon": look.below_horizon,
    }
