"""The fleet audit's only contact with `explain.audit`: its options, its entry point and its results.

`run_audit(AuditOptions)` is the one library entry point of `car explain`; what the fleet reads from its
result is named here (the drive's `--json` numbers, per-frame metrics by name), so a change in the audit's
result types is absorbed in this one module.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explain.audit import AuditOptions, AuditResult
    from explain.audit_types import FrameAudit

FRAME_METRICS = ("stop_on_can", "can_area", "pointing_hit", "below_horizon")
"""Per-frame metrics the fleet report uses (None where a frame has no value, e.g. no can in view)."""


def make_options(values: dict[str, Any]) -> AuditOptions:
    """AuditOptions from the fleet's settings (the keys `car explain` knows; the rest are the fleet's own)."""
    from explain.audit import AuditOptions

    known = {f.name for f in fields(AuditOptions)}
    return AuditOptions(**{k: v for k, v in values.items() if k in known})


def run(options: AuditOptions) -> AuditResult:
    from explain.audit import run_audit

    return run_audit(options)


def numbers_json(result: AuditResult) -> dict[str, Any]:
    """What `car explain --json` prints for this result."""
    from explain.audit import audit_numbers_json

    doc: dict[str, Any] = audit_numbers_json(result)
    return doc


def frame_metrics(frame: FrameAudit) -> dict[str, float | bool | None]:
    """The FRAME_METRICS of one audited frame (read from the audit-metric registry's values)."""
    values: dict[str, float | bool | None] = {}
    for name in FRAME_METRICS:
        value = frame.metrics.get(name)
        values[name] = value if isinstance(value, float | bool) or value is None else None
    return values
