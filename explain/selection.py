"""Which logged frames an audit explains (`--select`).

- `all`: every frame.
- `changes`: every frame where the decision differs from the previous tick's.
- `stride:K`: every K-th frame.
- `frames:A-B`: frames with A <= seq <= B.
- `auto` (default): every fault that has a frame, every decision change, every frame with a small margin
  (|P(STOP) − threshold| below `AUTO_MARGIN`), plus a stride sample (one frame in 50); capped at 10% of
  the frames.
  Under the cap the groups are taken in that order; a group that does not fit is thinned evenly (the
  smallest margins first).
"""

from __future__ import annotations

import itertools
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from explain.errors import ExplainError

AUTO_SHARE = 0.10  # the cap
AUTO_MARGIN = 0.15
AUTO_STRIDE_SHARE = 0.02  # the stride sample: 2% of the frames (one frame in 50)
AUTO_MIN = 1


@dataclass(frozen=True, slots=True)
class TickInfo:
    """What selection needs to know about one logged tick (no image)."""

    seq: int
    has_frame: bool
    p_stop: float | None
    decision: int
    faulted: bool


class Selector(ABC):
    @abstractmethod
    def select(self, ticks: Sequence[TickInfo], threshold: float) -> list[int]:
        """Sequence numbers to explain (each with a frame), ascending."""


def _framed(ticks: Sequence[TickInfo]) -> list[TickInfo]:
    return [t for t in ticks if t.has_frame]


def decision_changes(ticks: Sequence[TickInfo]) -> list[int]:
    out: list[int] = []
    for prev, cur in itertools.pairwise(ticks):
        if cur.decision != prev.decision and cur.has_frame:
            out.append(cur.seq)
    return out


class AllSelector(Selector):
    def select(self, ticks: Sequence[TickInfo], threshold: float) -> list[int]:
        return [t.seq for t in _framed(ticks)]


class ChangesSelector(Selector):
    def select(self, ticks: Sequence[TickInfo], threshold: float) -> list[int]:
        return decision_changes(ticks)


@dataclass(frozen=True, slots=True)
class StrideSelector(Selector):
    stride: int

    def select(self, ticks: Sequence[TickInfo], threshold: float) -> list[int]:
        return [t.seq for t in _framed(ticks)[:: self.stride]]


@dataclass(frozen=True, slots=True)
class RangeSelector(Selector):
    first: int
    last: int

    def select(self, ticks: Sequence[TickInfo], threshold: float) -> list[int]:
        return [t.seq for t in _framed(ticks) if self.first <= t.seq <= self.last]


@dataclass(frozen=True, slots=True)
class AutoSelector(Selector):
    share: float = AUTO_SHARE
    margin: float = AUTO_MARGIN

    def select(self, ticks: Sequence[TickInfo], threshold: float) -> list[int]:
        framed = _framed(ticks)
        cap = max(AUTO_MIN, int(self.share * len(framed)))
        close = sorted(
            (t for t in framed if t.p_stop is not None and abs(t.p_stop - threshold) < self.margin),
            key=lambda t: abs((t.p_stop or 0.0) - threshold),
        )
        stride = max(1, round(1 / AUTO_STRIDE_SHARE))
        groups = (
            [t.seq for t in framed if t.faulted],
            decision_changes(ticks),
            [t.seq for t in close],
            [t.seq for t in framed[::stride]],
        )
        chosen: list[int] = []
        for group in groups:
            taken = set(chosen)
            fresh = [seq for seq in dict.fromkeys(group) if seq not in taken]
            room = cap - len(chosen)
            if room <= 0:
                break
            # A group larger than the room left is thinned evenly rather than cut at its start.
            chosen += fresh if len(fresh) <= room else [fresh[i] for i in evenly_spaced(len(fresh), room)]
        return sorted(chosen)


def evenly_spaced(total: int, count: int) -> list[int]:
    """`count` indices spread over range(total), first and last included."""
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]


def parse_selector(text: str) -> Selector:
    """`all`, `auto`, `changes`, `stride:K`, `frames:A-B` (see the module docstring)."""
    simple: dict[str, Selector] = {"all": AllSelector(), "auto": AutoSelector(), "changes": ChangesSelector()}
    if text in simple:
        return simple[text]
    stride = re.fullmatch(r"stride:(\d+)", text)
    if stride and int(stride.group(1)) >= 1:
        return StrideSelector(int(stride.group(1)))
    frames = re.fullmatch(r"frames:(\d+)-(\d+)", text)
    if frames and int(frames.group(1)) <= int(frames.group(2)):
        return RangeSelector(int(frames.group(1)), int(frames.group(2)))
    raise ExplainError(
        f"--select {text!r}: use all, auto, changes, stride:K (K >= 1) or frames:A-B "
        "(A <= B, the log's seq numbers)"
    )
