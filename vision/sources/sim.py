"""The simulated forward camera (`source.kind: sim`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from vision.clock import Clock, MonotonicClock
from vision.frame import Frame, GroundTruth
from vision.sources.base import (
    Lifecycle,
    Pacer,
)


class SimWorld(Protocol):
    """What SimSource needs of `vision.sim.World`."""

    def step(self, speed_mps: float, dt: float) -> None: ...

    def render(self) -> tuple[np.ndarray, GroundTruth]: ...


class SimSource(Lifecycle):
    """The simulated forward camera: each read moves the world by the time passed, then renders it.

    `speed_mps()` is asked for the car's speed at every frame (in `car drive` it is the virtual
    microcontroller's motor output times the world's top speed), so the loop is closed: a STOP the firmware
    obeys stops the car. `fps` paces frames on `clock` (0: as fast as they render). With a simulated
    clock (`car sim eval`) no real time passes at all.
    """

    def __init__(
        self,
        world: SimWorld,
        speed_mps: Callable[[], float],
        *,
        fps: float = 30.0,
        clock: Clock | None = None,
        name: str = "sim",
    ) -> None:
        self.world = world
        self.speed_mps = speed_mps
        self.name = name
        self.clock = clock or MonotonicClock()
        self._pacer = Pacer(fps, self.clock)
        self._t_last: float | None = None
        self._seq = 0
        self.distance_m = 0.0

    def _open(self) -> None:
        self._t_last = None
        self._seq = 0

    def read(self, timeout: float) -> Frame:
        self._pacer.wait(timeout)
        now = self.clock.now()
        if self._t_last is not None:
            dt = now - self._t_last
            speed = self.speed_mps()
            self.world.step(speed, dt)
            self.distance_m += speed * dt
        self._t_last = now
        rgb, truth = self.world.render()
        frame = Frame(self._seq, self.clock.now(), rgb, self.name, truth)
        self._seq += 1
        return frame

    def _close(self) -> None:
        pass
