"""The host link and the reference firmware in one process, on one (simulated) clock: no pty, no threads.

For the closed-loop simulation (car/sim_eval.py): it runs the *same* `HostSession` and `McuCore` as a
drive over a pty, but every frame goes straight from the host codec into the core and the replies straight
back, as fast as the machine allows. Time is whatever `clock()` returns (e.g. the simulation's clock), so
the watchdog fires in simulated time: call `poll(now)` (or `health(now)`) every simulated step.

    clock = SimClock()                       # anything returning seconds
    link = LoopbackLink(clock=clock.now)     # McuCore with FirmwareConfig() defaults
    with link:
        link.handshake(); link.arm()
        link.send(Command.drive(0.5))
        car.advance(link.motor_fraction)     # the firmware's motor output moves the simulated car
        link.health(clock.now())             # ticks the firmware, reports faults

Replies arrive with zero round-trip time; a missing ACK can only come from the firmware not answering.
"""

from __future__ import annotations

from collections.abc import Callable

from firmware_bridge.host import FirmwareRequirements, LinkFault, LinkHealth
from firmware_bridge.link import BaseLink, Clock
from firmware_bridge.mcu import McuCore
from firmware_bridge.protocol import SPEED_FULL_SCALE, Stop


class LoopbackLink(BaseLink):
    """`Link` whose far end is an in-process `McuCore` fed synchronously on the caller's clock."""

    def __init__(
        self,
        core: McuCore | None = None,
        *,
        clock: Clock,
        ack_timeout_s: float = 0.1,
        handshake_timeout_s: float = 0.5,
        requirements: FirmwareRequirements | None = None,
    ) -> None:
        super().__init__(
            "loopback://mcu-core",
            ack_timeout_s=ack_timeout_s,
            handshake_timeout_s=handshake_timeout_s,
            requirements=requirements or FirmwareRequirements(),
            clock=clock,
        )
        self.core = core if core is not None else McuCore(boot_time=clock())

    def open(self) -> None:
        self._opened = True

    def close(self) -> None:
        if self._opened:
            self._transmit(Stop())  # the simulated car stops when the link goes, like a real one
        self._opened = False

    def _write_frame(self, frame: bytes) -> str:
        now = self._clock()
        reply = self.core.feed(frame, now)
        with self._lock:
            self._session.receive(reply, now)
        return ""

    def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self._lock:
            return predicate()

    def _standing_faults(self) -> tuple[LinkFault, ...]:
        return ()

    def _connected(self) -> bool:
        return self._opened

    def _reconnects(self) -> int:
        return 0

    def poll(self, now: float) -> None:
        """Let the firmware see time pass (watchdog, gap timeout) and take in what it says."""
        reply = self.core.tick(now)
        if reply:
            with self._lock:
                self._session.receive(reply, now)

    def health(self, now: float) -> LinkHealth:
        self.poll(now)
        return super().health(now)

    @property
    def motor_fraction(self) -> float:
        """The firmware's mean motor output, -1..1 (what moves the simulated car)."""
        return (self.core.motor_left + self.core.motor_right) / (2.0 * SPEED_FULL_SCALE)
