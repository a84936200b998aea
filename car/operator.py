"""The operator's say in the control loop: an e-stop latch, resume, and manual driving (teleop).

Other threads (the web console's server) write into an `OperatorInbox`; the loop reads it exactly once per
tick (`poll`, on the loop's own clock) and never waits for it: every method holds a lock for a few
attribute reads or writes only.

- **E-stop**: `emergency_stop()` latches. From the next tick on, the loop adds an `operator_stop` fault, so
  the policy says STOP (sent in that tick) and its GO streak is reset. `resume()` clears the latch; the car
  then drives again only after the policy's usual confident GO frames.
- **Manual mode** (teleop): the operator's command replaces the policy's decision; the network still runs
  and its P(STOP) is logged (shadow), but it is not obeyed. Every fault still means STOP. Dead-man rule:
  the car drives only while the operator holds "drive" *and* a message arrived within `deadman_s` of the
  loop's clock (the page repeats its message while a key is held); otherwise STOP. The speed is clamped to
  `max_speed`.

Nothing here imports a web stack: `car drive` without `--web` and the closed-loop evaluation never build one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from car.types import Decision, Fault, FaultKind, Reason
from vision.labels import GO, STOP

DEADMAN_S = 0.25


@dataclass(frozen=True, slots=True)
class OperatorCommand:
    """What the operator asks of one tick."""

    estop: Fault | None = None  # a latched e-stop: added to the tick's faults
    manual: bool = False  # teleop: the operator's command replaces the policy's decision
    drive: bool = False  # manual: drive (the dead-man rule is satisfied)
    speed: float = 0.0  # manual: the speed fraction to drive at (already within the limit)


@dataclass(frozen=True, slots=True)
class OperatorState:
    """A snapshot for display (the console shows it beside the decision)."""

    manual: bool
    latched: bool
    latched_by: str
    drive_held: bool
    speed: float
    max_speed: float


class OperatorInbox:
    """See the module docstring. Thread-safe; the loop calls `poll(now)` once per tick."""

    def __init__(self, *, manual: bool = False, max_speed: float = 0.3, deadman_s: float = DEADMAN_S) -> None:
        if not 0.0 <= max_speed <= 1.0:
            raise ValueError(f"max_speed={max_speed}: must be a fraction from 0 to 1")
        self.manual = manual
        self.max_speed = max_speed
        self.deadman_s = deadman_s
        self._lock = threading.Lock()
        self._latched = False
        self._latched_by = ""
        self._held = False
        self._speed = max_speed
        self._messages = 0  # teleop messages received (each one is a dead-man heartbeat)
        self._seen_messages = 0
        self._last_heard: float | None = None  # loop-clock time of the tick that saw the newest message

    # -- writers (any thread) ------------------------------------------------------------------------------
    def emergency_stop(self, source: str = "operator") -> None:
        """Latch the e-stop: the next tick sends STOP, and every tick after it until `resume()`."""
        with self._lock:
            if not self._latched:
                self._latched_by = source
            self._latched = True
            self._held = False

    def resume(self) -> None:
        """Clear the e-stop latch (the policy still needs its confident GO frames before driving)."""
        with self._lock:
            self._latched = False
            self._latched_by = ""

    def teleop(self, drive: bool, speed: float | None = None) -> None:
        """One teleop message: whether "drive" is held now, and at what speed (clamped to the limit)."""
        with self._lock:
            self._held = bool(drive)
            if speed is not None:
                self._speed = min(max(float(speed), 0.0), self.max_speed)
            self._messages += 1

    # -- the loop ------------------------------------------------------------------------------------------
    def poll(self, now: float) -> OperatorCommand:
        """The operator's command for the tick running at loop-clock time `now`."""
        with self._lock:
            if self._messages != self._seen_messages:
                self._seen_messages = self._messages
                self._last_heard = now
            estop = Fault(FaultKind.OPERATOR_STOP, f"e-stop by {self._latched_by}") if self._latched else None
            if not self.manual:
                return OperatorCommand(estop=estop)
            fresh = self._last_heard is not None and now - self._last_heard <= self.deadman_s
            drive = self._held and fresh and not self._latched
            return OperatorCommand(estop=estop, manual=True, drive=drive, speed=self._speed if drive else 0.0)

    def state(self) -> OperatorState:
        with self._lock:
            return OperatorState(
                self.manual, self._latched, self._latched_by, self._held, self._speed, self.max_speed
            )


def manual_decision(shadow: Decision, command: OperatorCommand, has_faults: bool) -> Decision:
    """The decision a manual tick sends: the operator's, with the network's probabilities kept for the log.

    Faults still mean STOP (`fault` reason); otherwise GO or STOP as the operator holds it (`manual`).
    """
    if has_faults:
        return Decision(STOP, Reason.FAULT, shadow.probs, 0)
    return Decision(GO if command.drive else STOP, Reason.MANUAL, shadow.probs, 0)
