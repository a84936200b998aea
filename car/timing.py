"""Clocks and per-stage timing statistics for the control loop.

The loop reads time only through a `Clock` (`vision.clock`), so the same loop code runs in real time on the
car (`MonotonicClock`) and as fast as the machine allows in the closed-loop evaluation (`SimulatedClock`,
whose `sleep_until` just moves time forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from car.types import STAGES, StageTimings

# The one clock, defined in vision (which the frame sources share); re-exported for the car's code.
from vision.clock import Clock, MonotonicClock, SimulatedClock

__all__ = [
    "Clock",
    "MonotonicClock",
    "SimulatedClock",
    "StageStat",
    "TimingRecorder",
    "format_stats",
    "stage_stat",
]


@dataclass(frozen=True, slots=True)
class StageStat:
    """Distribution of one stage's duration over a drive, in milliseconds."""

    stage: str
    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def stage_stat(stage: str, seconds: list[float] | np.ndarray) -> StageStat:
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    if values.size == 0:
        return StageStat(stage, 0, float("nan"), float("nan"), float("nan"), float("nan"))
    p50, p99 = np.percentile(values, [50, 99])
    return StageStat(
        stage, int(values.size), float(p50), float(p99), float(values.mean()), float(values.max())
    )


@dataclass(slots=True)
class TimingRecorder:
    """Collects every tick's `StageTimings`; `stats()` gives p50/p99 per stage and for the latency."""

    per_stage: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    latencies: list[float] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)

    def add(self, timings: StageTimings, tick_seconds: float) -> None:
        for stage, value in zip(STAGES, timings.stage_values(), strict=True):
            self.per_stage[stage].append(value)
        if timings.latency is not None:
            self.latencies.append(timings.latency)
        self.ticks.append(tick_seconds)

    def stats(self) -> tuple[StageStat, ...]:
        rows = [stage_stat(stage, self.per_stage[stage]) for stage in STAGES]
        rows.append(stage_stat("tick", self.ticks))
        rows.append(stage_stat("latency", self.latencies))
        return tuple(rows)


def format_stats(stats: tuple[StageStat, ...]) -> str:
    """A small fixed-width table for the end-of-drive summary."""
    lines = [f"  {'stage':<11}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}"]
    lines += [
        f"  {s.stage:<11}{s.count:>7}{s.p50_ms:>9.2f}{s.p99_ms:>9.2f}{s.mean_ms:>9.2f}{s.max_ms:>9.2f}"
        for s in stats
    ]
    return "\n".join(lines)
