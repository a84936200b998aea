"""The audit-metric registry: a metric is a function of one explained frame plus a registration.

`FrameAudit` holds each frame's metric values by name, and `audit.json`, `--json` and the report read
`FRAME_METRICS` instead of naming fields: a new metric is one function and one `register(...)` call below.
A metric gives a value (or None when it does not apply to the frame, e.g. no can in view), says how the
report captions it, and how the drive's numbers summarise it (`Summary`: a key in `--json`/`audit.json`,
a reducer over the frames that have a value, and a report row).

Registered (see `explain.metrics` for the definitions): `stop_on_can`, `can_area`, `pointing_hit` (with
ground truth), `below_horizon` and `top_regions` (without).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from explain.metrics import BACKGROUND_SHARE, Focus, below_horizon_mask, focus, look, positive_share

MetricValue = float | bool | list[dict[str, object]] | None


class FrameEvidence:
    """What a metric may look at: the frame's STOP pixel map, the can's mask at the map's size (None
    without ground truth; all False when the truth says no can is in view) and the horizon row."""

    def __init__(self, stop_map: np.ndarray, can_mask: np.ndarray | None, horizon: float) -> None:
        self.stop_map = stop_map
        self.can_mask = can_mask
        self.horizon = horizon

    @cached_property
    def focus(self) -> Focus | None:
        """Focus on the can (`explain.metrics.focus`), or None: no ground truth, or no can in view."""
        return None if self.can_mask is None else focus(self.stop_map, self.can_mask)


@dataclass(frozen=True, slots=True)
class Summary:
    """One drive-level number made from a metric's per-frame values (the frames with a value)."""

    key: str  # the name in `--json` and audit.json's "numbers"
    label: str  # the report's row
    reduce: Callable[[Sequence[MetricValue]], float | int | None]
    fmt: str = "{:.1%}"


@dataclass(frozen=True, slots=True)
class FrameMetric:
    name: str  # the per-frame key in audit.json
    compute: Callable[[FrameEvidence], MetricValue]
    caption: Callable[[MetricValue], str]  # the report's text for one frame's value
    summaries: tuple[Summary, ...] = ()


FRAME_METRICS: dict[str, FrameMetric] = {}


def register(metric: FrameMetric) -> FrameMetric:
    FRAME_METRICS[metric.name] = metric
    return metric


def mean(values: Sequence[MetricValue]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return float(np.mean(numbers)) if numbers else None


def count(values: Sequence[MetricValue]) -> int:
    return len(values)


# ------------------------------------------------------------------------------------------ metrics


def stop_on_can(e: FrameEvidence) -> float | None:
    """Share of positive STOP attribution on the (dilated) can."""
    return None if e.focus is None else e.focus.on_can


def can_area(e: FrameEvidence) -> float | None:
    """Share of the image the dilated can covers: what a map spread at random scores."""
    return None if e.focus is None else e.focus.can_area


def pointing_hit(e: FrameEvidence) -> bool | None:
    """Is the strongest STOP pixel on the can?"""
    return None if e.focus is None else e.focus.pointing_hit


def below_horizon(e: FrameEvidence) -> float:
    """Share of positive STOP attribution at or below the horizon row."""
    size = e.stop_map.shape[0]
    return positive_share(e.stop_map, below_horizon_mask(size, e.horizon))


def top_regions(e: FrameEvidence) -> list[dict[str, object]]:
    """The 4×4 grid cells holding the most positive STOP attribution."""
    return [{"region": r.name, "share": r.share} for r in look(e.stop_map, e.horizon).top_regions]


def _share(text: str) -> Callable[[MetricValue], str]:
    return lambda v: f"{text} {v:.0%}" if isinstance(v, float) else ""


def _regions_caption(v: MetricValue) -> str:
    if not isinstance(v, list):
        return ""
    return "top regions: " + ", ".join(f"{r['region']} {r['share']:.0%}" for r in v)


register(
    FrameMetric(
        "stop_on_can",
        stop_on_can,
        _share("STOP on can"),
        (
            Summary("stop_focus_mean", "STOP attribution on the can (mean)", mean),
            Summary("frames_with_can", "frames with the can in view (ground truth)", count, "{}"),
        ),
    )
)
register(
    FrameMetric(
        "can_area",
        can_area,
        lambda v: f"can covers {v:.1%}" if isinstance(v, float) else "",
        (Summary("random_focus_mean", "share of the image the can covers (a random map's score)", mean),),
    )
)
register(
    FrameMetric(
        "pointing_hit",
        pointing_hit,
        lambda v: "" if v is None else f"pointing {'hit' if v else 'miss'}",
        (Summary("pointing_hit_rate", "pointing game hit rate", mean),),
    )
)
register(
    FrameMetric(
        "below_horizon",
        below_horizon,
        _share("below horizon"),
        (Summary("below_horizon_mean", "STOP attribution below the horizon (mean)", mean),),
    )
)
register(FrameMetric("top_regions", top_regions, _regions_caption))


# ------------------------------------------------------------------------------------------ using them


def measure(evidence: FrameEvidence) -> dict[str, MetricValue]:
    """Every registered metric of one frame, by name."""
    return {name: metric.compute(evidence) for name, metric in FRAME_METRICS.items()}


def summarise_metrics(frames: Sequence[Mapping[str, MetricValue]]) -> dict[str, float | int | None]:
    """Every registered summary over the frames' metric values (None values left out)."""
    out: dict[str, float | int | None] = {}
    for name, metric in FRAME_METRICS.items():
        values = [f[name] for f in frames if f.get(name) is not None]
        for summary in metric.summaries:
            out[summary.key] = summary.reduce(values)
    return out


def summary_rows(numbers: Mapping[str, float | int | None]) -> list[tuple[str, str]]:
    """(label, formatted value) of every registered summary, for the report."""
    rows = []
    for metric in FRAME_METRICS.values():
        for s in metric.summaries:
            value = numbers.get(s.key)
            rows.append((s.label, "n/a" if value is None else s.fmt.format(value)))
    return rows


def caption(values: Mapping[str, MetricValue]) -> list[str]:
    """The report's caption fragments of one frame, in registry order (empty ones left out)."""
    parts = [FRAME_METRICS[name].caption(v) for name, v in values.items() if name in FRAME_METRICS]
    return [p for p in parts if p]


def rests_on_background(decided_stop: bool, values: Mapping[str, MetricValue], has_truth: bool) -> bool:
    """A STOP of the network whose positive attribution lies mostly off the can (or, without ground
    truth, above the horizon). A STOP with ground truth but no can in view rests on background."""
    if not decided_stop:
        return False
    if has_truth:
        on_can = values.get("stop_on_can")
        return not isinstance(on_can, float) or on_can < BACKGROUND_SHARE
    below = values.get("below_horizon")
    return isinstance(below, float) and below < BACKGROUND_SHARE
