"""The fail-safe GO/STOP policy: threshold, hysteresis, every fault means STOP, slow when unsure.

The policy is pure (no clock, no I/O): the loop feeds it each tick's probabilities (or None), the faults
it found and how unfamiliar the frame looked (0..1, see `vision.ood`), and gets a `Decision`. It starts in
STOP: the car moves only after `go_frames` consecutive confident GO frames, and again after every STOP.
The same code runs on the car (`car drive`) and in the closed-loop evaluation (`car sim eval`).

Defence in depth, each part switchable in `PolicyConfig`:
- STOP is immediate on one frame with P(STOP) above the threshold; nothing below ever delays it.
- *Slow when unsure* (`slow_when_unsure`): a GO drives at `speed_scale` × the drive speed, falling linearly
  from 1 at caution `slow_from` to `slowest` at the threshold. Caution is the largest of this frame's
  P(STOP), the mean P(STOP) of the last `evidence_frames` frames (*temporal evidence*: a can that keeps
  showing slows the car before any one frame is sure), and the frame's unfamiliarity. A late STOP then
  costs centimetres: stopping distance is latency × speed + speed² / (2 × braking).
- Caution changes the speed only, never GO into STOP: replaying a log with other caution settings
  reproduces every decision.
- *Stay stopped while unfamiliar* (`ood_hold`): after an `out_of_distribution` STOP, a GO frame counts
  towards driving again only when it is also familiar (unfamiliarity at most `ood_resume_below`). Without
  it a car in an unfamiliar room creeps: STOP on an unfamiliar frame, GO on the next merely odd one, and a
  network that cannot see the can there drives into it in short steps.
- *A STOP that remembers* (`stop_memory_frames`): after a STOP on P(STOP), the car drives again only once
  that many frames in a row have stayed at or under the threshold (and the last `go_frames` of them were
  confident). A standing car sees the same view frame after frame, so a network unsure of it answers with
  noise: STOP, then three lucky GO frames, a creep forward, STOP again, until the can is below the camera's
  view and only GO is left (tuning seed 13900, run 727). A frame over the threshold restarts the count; a
  can taken away lets the car go after `stop_memory_frames` quiet frames.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from car.config import PolicyConfig
from car.errors import CarError
from car.types import Decision, Fault, FaultKind, Probabilities, Reason
from vision.labels import GO, STOP


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """The numbers the policy runs on: the threshold is the bundle manifest's unless configured."""

    threshold: float
    go_frames: int
    go_margin: float
    slow_when_unsure: bool = False
    slow_from: float = 0.1
    slowest: float = 1.0
    evidence_frames: int = 0
    ood_hold: bool = False
    ood_resume_below: float = 0.0
    stop_memory_frames: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise CarError(f"policy threshold={self.threshold}: must lie strictly between 0 and 1")
        if self.go_frames < 1:
            raise CarError(f"policy.go_frames={self.go_frames}: must be at least 1")
        if self.slow_when_unsure and self.slow_from >= self.threshold:
            raise CarError(
                f"policy.slow_from={self.slow_from} with threshold {self.threshold}: slowing must start "
                "below the STOP threshold; lower slow_from"
            )
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
        return cls(
            threshold,
            config.go_frames,
            config.go_margin,
            slow_when_unsure=config.slow_when_unsure,
            slow_from=config.slow_from,
            slowest=config.slowest,
            evidence_frames=config.evidence_frames,
            ood_hold=config.ood_hold,
            ood_resume_below=config.ood_resume_below,
            stop_memory_frames=config.stop_memory_frames,
        )

    def speed_scale(self, caution_p: float, unfamiliarity: float) -> float:
        """Fraction of the drive speed for a GO at this caution (1 when slowing is off)."""
        if not self.slow_when_unsure:
            return 1.0
        span = max(self.threshold - self.slow_from, 1e-6)
        level = max(min((caution_p - self.slow_from) / span, 1.0), 0.0, min(unfamiliarity, 1.0))
        return 1.0 - (1.0 - self.slowest) * level


def probabilities_fault(probs: Probabilities) -> str | None:
    """Why a pair of outputs cannot be trusted (non-finite or outside [0, 1]), or None."""
    for name, value in (("GO", probs.go), ("STOP", probs.stop)):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            return f"P({name})={value!r} is not a probability"
    return None


class Policy:
    """Stateful in the GO streak, whether the car may drive, the recent P(STOP)s, the OOD hold and the
    frames since the last one over the threshold."""

    def __init__(self, params: PolicyParams) -> None:
        self.params = params
        self._go_streak = 0
        self._driving = False
        self._held_unfamiliar = False
        self._recent: deque[float] = deque(maxlen=max(params.evidence_frames, 1))
        self._quiet = params.stop_memory_frames  # frames at or under the threshold since the last above

    @property
    def driving(self) -> bool:
        return self._driving

    def reset(self) -> None:
        """Back to the start state: stopped, no GO frames counted."""
        self._go_streak = 0
        self._driving = False
        self._held_unfamiliar = False
        self._recent.clear()
        self._quiet = self.params.stop_memory_frames

    def caution(self, p_stop: float) -> float:
        """This frame's P(STOP), raised to the recent frames' mean when that is higher (and counted)."""
        if self.params.evidence_frames <= 0:
            return p_stop
        self._recent.append(p_stop)
        return max(p_stop, sum(self._recent) / len(self._recent))

    def decide(
        self, probs: Probabilities | None, faults: Sequence[Fault] = (), unfamiliarity: float = 0.0
    ) -> Decision:
        if self.params.ood_hold and any(f.kind is FaultKind.OUT_OF_DISTRIBUTION for f in faults):
            self._held_unfamiliar = True
        if faults or probs is None:
            return self._stop(Reason.FAULT, probs)
        if probabilities_fault(probs) is not None:
            return self._stop(Reason.FAULT, probs)
        p = self.params
        scale = p.speed_scale(self.caution(probs.stop), unfamiliarity)
        if probs.stop > p.threshold:
            self._quiet = 0
            return self._stop(Reason.STOP_PROBABILITY, probs)
        self._quiet += 1
        if self._held_unfamiliar and unfamiliarity > p.ood_resume_below:
            # held by an out-of-distribution STOP (so stopped: driving again clears it): only familiar GO
            # frames count
            self._go_streak = 0
            return Decision(STOP, Reason.HELD_UNFAMILIAR, probs, 0)
        if probs.stop < p.confident_go_below:
            self._go_streak += 1
            if self._driving or (self._go_streak >= p.go_frames and self._quiet >= p.stop_memory_frames):
                self._driving = True
                self._held_unfamiliar = False
                return Decision(GO, Reason.GO_CONFIDENT, probs, self._go_streak, scale)
            waiting = Reason.STOP_MEMORY if self._go_streak >= p.go_frames else Reason.AWAITING_GO
            return Decision(STOP, waiting, probs, self._go_streak)
        # Below the threshold but not confidently: keep driving if driving, keep waiting if stopped.
        self._go_streak = 0
        if self._driving:
            return Decision(GO, Reason.GO_HOLD, probs, 0, scale)
        return Decision(STOP, Reason.AWAITING_GO, probs, 0)

    def _stop(self, reason: Reason, probs: Probabilities | None) -> Decision:
        self._go_streak = 0
        self._driving = False
        return Decision(STOP, reason, probs, 0)
