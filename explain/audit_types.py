"""The audit's data: options in, per-frame and per-drive results out.

Both the audit (`explain.audit`) and the report (`explain.report`) read these; neither imports the other's
types, so the audit imports the report and nothing imports back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from explain.audit_metrics import MetricValue
from explain.background import DEFAULT_SPEC, Background
from explain.explainers import DEFAULT_METHOD
from explain.faithfulness import Faithfulness
from explain.occlusion import OcclusionRow
from explain.sanity import SanityCheck
from explain.selection import TickInfo

DEFAULT_HORIZON = 0.35  # the simulated camera (12° down, 62° FOV) sees the horizon at ~32% of the height


@dataclass(frozen=True, slots=True)
class AuditOptions:
    log: Path
    out: Path
    select: str = "auto"
    background: str = DEFAULT_SPEC
    device: str = "cpu"
    model: Path | None = None
    horizon: float = DEFAULT_HORIZON
    occlusion_frames: int = 6
    sanity_frames: int = 2
    seed: int = 0
    outputs: str = "both"  # "stop": explain P(STOP) only (half the time; the report then has no GO maps)
    progress: bool = True
    method: str = DEFAULT_METHOD  # an `explain.explainers.EXPLAINERS` name
    faithfulness_frames: int = 4  # the most confident STOP frames each method's deletion curve runs on


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """Which network is explained, and how well it matches the one that drove."""

    bundle_name: str
    bundle_path: str
    arch: str
    weights_sha256: str
    drove_name: str
    drove_path: str
    runtime: str
    hashes_match: bool
    override: bool  # --model given: explaining a network that may not be the one that drove
    agree: int  # decisions (P(STOP) ≥ threshold) of the torch twin equal to the logged ones
    compared: int
    max_prob_diff: float
    threshold: float

    @property
    def first_line(self) -> str:
        if self.override and not self.hashes_match:
            return (
                f"NOT THE NETWORK THAT DROVE: explaining {self.bundle_name} ({self.bundle_path}); "
                f"the car drove {self.drove_name} ({self.drove_path}); its torch twin agrees with "
                f"{self.agree} of {self.compared} logged decisions"
            )
        if self.runtime == "int8":
            return (
                f"The car drove the INT8 network of {self.drove_name}; the float twin explained here agrees "
                f"with {self.agree} of {self.compared} decisions (max |ΔP| {self.max_prob_diff:.3g})"
            )
        return (
            f"Explaining {self.bundle_name}, the network that drove (hashes match; the torch twin reproduces "
            f"{self.agree} of {self.compared} decisions, max |ΔP| {self.max_prob_diff:.2g})"
        )


@dataclass(frozen=True, slots=True)
class Tick:
    """One logged tick, without its image."""

    seq: int
    t: float
    p_stop: float | None
    decision: int
    faults: tuple[str, ...]
    has_frame: bool
    truth_label: int | None

    def info(self) -> TickInfo:
        return TickInfo(self.seq, self.has_frame, self.p_stop, self.decision, bool(self.faults))


@dataclass(frozen=True, slots=True)
class FrameAudit:
    """One explained frame: what the car did, and every registered metric (`FRAME_METRICS`) by name."""

    seq: int
    t: float
    p_stop: float  # the explained network's output
    p_go: float
    decision: int  # what the car decided
    faults: tuple[str, ...]
    truth_label: int | None
    metrics: Mapping[str, MetricValue]
    flagged: bool


@dataclass(frozen=True, slots=True)
class AuditNumbers:
    """What `--json` prints (`to_json`): counts, every registered metric summary, faithfulness, time."""

    frames_explained: int
    frames_total: int
    metrics: Mapping[str, float | int | None]  # registered summaries, e.g. stop_focus_mean
    flagged: int
    agree: int
    agree_of: int
    sanity_final_rank_correlation: float | None
    sanity_passed: bool | None
    method: str
    faithfulness: float | None  # the deletion gap of `method`'s maps
    faithfulness_by_method: Mapping[str, float]
    seconds: float

    def __getitem__(self, key: str) -> object:
        return self.to_json()[key]

    def to_json(self) -> dict[str, object]:
        return {
            "frames_explained": self.frames_explained,
            "frames_total": self.frames_total,
            **self.metrics,
            "flagged": self.flagged,
            "agree": self.agree,
            "agree_of": self.agree_of,
            "sanity_final_rank_correlation": self.sanity_final_rank_correlation,
            "sanity_passed": self.sanity_passed,
            "method": self.method,
            "faithfulness": self.faithfulness,
            "faithfulness_by_method": dict(self.faithfulness_by_method),
            "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class AuditResult:
    options: AuditOptions
    model: ModelCheck
    background: Background
    ticks: tuple[Tick, ...]
    frames: tuple[FrameAudit, ...]
    occlusion: tuple[OcclusionRow, ...]
    sanity: SanityCheck | None
    faithfulness: tuple[Faithfulness, ...]
    numbers: AuditNumbers
    report: Path
    reused: int
    timings: dict[str, float] = field(default_factory=dict)
