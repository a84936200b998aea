"""The clocks: one for wall time (`MonotonicClock`), one that moves only when told (`SimulatedClock`).

The control loop and the paced frame sources read time only through a `Clock`, so the same code runs in
real time on the car and as fast as the machine allows in the closed-loop evaluation. Lives in `vision`
(the lowest package that needs a clock) so that `vision.sources` and `car` share it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def sleep_until(self, t: float) -> None:
        """Return at (or just after) time `t`; immediately if `t` has passed."""
        ...


class MonotonicClock:
    """Wall time: `time.monotonic`, the same clock the frame sources stamp frames with."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


@dataclass(slots=True)
class SimulatedClock:
    """Time that passes only when told to: `advance(dt)` or `sleep_until(t)`."""

    t: float = 0.0

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def advance(self, dt: float) -> None:
        self.t += dt
