"""The fail-safe GO/STOP policy: threshold, hysteresis, and every fault means STOP.

The policy is pure (no clock, no I/O): the loop feeds it each tick's probabilities (or None) and the faults
it found, and gets a `Decision`. It starts in STOP: the car moves only after `go_frames` consecutive
confident GO frames, and again after every STOP. The same code runs on the car (`car drive`) and in the
closed-loop evaluation (`car sim eval`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from car.config import PolicyConfig
from car.errors import CarError
from car.types import Decision, Fault, Probabilities, Reason
from vision.labels import GO, STOP


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """The numbers the policy runs on: the threshold is the bundle manifest's unless configured."""

    threshold: float
    go_frames: int
    go_margin: float

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise CarError(f"policy threshold={self.threshold}: must lie strictly between 0 and 1")
        if self.go_frames < 1:
            raise CarError(f"policy.go_frames={self.go_frames}: must be at least 1")
        if self.threshold - self.go_margin <= 0.0:
            raise CarError(
                f"policy.go_margin={self.go_margin} with threshold {self.threshold}: no P(STOP) could ever "
                "be a confident GO; lower go_margin"
            )

    @property
    def confident_go_below(self) -> float:
        return self.threshold - self.go_margin

    @classmethod
    def from_config(cls, config: PolicyConfig, manifest_threshold: float) -> PolicyParams:
        threshold = manifest_threshold if config.threshold is None else config.threshold
        return cls(threshold, config.go_frames, config.go_margin)


def probabilities_fault(probs: Probabilities) -> str | None:
    """Why a pair of outputs cannot be trusted (non-finite or outside [0, 1]), or None."""
    for name, value in (("GO", probs.go), ("STOP", probs.stop)):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            return f"P({name})={value!r} is not a probability"
    return None


class Policy:
    """Stateful only in the GO streak and whether the car is currently allowed to drive."""

    def __init__(self, params: PolicyParams) -> None:
        self.params = params
        self._go_streak = 0
        self._driving = False

    @property
    def driving(self) -> bool:
        return self._driving

    def reset(self) -> None:
        """Back to the start state: stopped, no GO frames counted."""
        self._go_streak = 0
        self._driving = False

    def decide(self, probs: Probabilities | None, faults: Sequence[Fault] = ()) -> Decision:
        if faults or probs is None:
            return self._stop(Reason.FAULT, probs)
        if probabilities_fault(probs) is not None:
            return self._stop(Reason.FAULT, probs)
        p = self.params
        if probs.stop > p.threshold:
            return self._stop(Reason.STOP_PROBABILITY, probs)
        if probs.stop < p.confident_go_below:
            self._go_streak += 1
            if self._driving or self._go_streak >= p.go_frames:
                self._driving = True
                return Decision(GO, Reason.GO_CONFIDENT, probs, self._go_streak)
            return Decision(STOP, Reason.AWAITING_GO, probs, self._go_streak)
        # Below the threshold but not confidently: keep driving if driving, keep waiting if stopped.
        self._go_streak = 0
        if self._driving:
            return Decision(GO, Reason.GO_HOLD, probs, 0)
        return Decision(STOP, Reason.AWAITING_GO, probs, 0)

    def _stop(self, reason: Reason, probs: Probabilities | None) -> Decision:
        self._go_streak = 0
        self._driving = False
        return Decision(STOP, reason, probs, 0)
