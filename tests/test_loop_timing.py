"""Loop pacing and per-stage timing, measured on a simulated clock so the numbers are exact.

The stand-in detector does no real work: it advances the simulated clock by a chosen time, as a network
taking that long would. Everything else is real: the loop, the policy, the firmware core behind the host
session (in-process on the same clock), the simulated camera.
"""

from __future__ import annotations

import numpy as np
import pytest

from car.config import LoopConfig
from car.links import BridgeMotorLink
from car.loop import ControlLoop, NullSink
from car.policy import Policy, PolicyParams
from car.timing import SimulatedClock
from car.types import DriveRecord
from firmware_bridge.loopback import LoopbackLink
from vision.frame import GroundTruth
from vision.preprocess import Preprocessing
from vision.sources import SimSource


class FlatWorld:
    def step(self, speed_mps: float, dt: float) -> None:
        pass

    def render(self) -> tuple[np.ndarray, GroundTruth]:
        return np.full((224, 224, 3), 100, np.uint8), GroundTruth(0)


class TimedDetector:
    """Says GO with certainty and takes `seconds` of simulated time to do so."""

    input_size = 224

    def __init__(self, clock: SimulatedClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.clock.advance(self.seconds)
        return np.tile(np.array([[0.99, 0.01]], np.float32), (batch.shape[0], 1))


def run_loop(work_s: float, rate_hz: float, seconds: float) -> tuple[ControlLoop, list[DriveRecord]]:
    clock = SimulatedClock(100.0)
    link = LoopbackLink(clock=clock.now)
    link.open()
    link.handshake()
    link.arm()
    records: list[DriveRecord] = []
    loop = ControlLoop(
        source=SimSource(FlatWorld(), lambda: 0.0, fps=0.0, clock=clock),
        detector=TimedDetector(clock, work_s),
        preprocessing=Preprocessing(),
        policy=Policy(PolicyParams(0.5, 3, 0.1)),
        link=BridgeMotorLink(link),
        sink=NullSink(),
        clock=clock,
        config=LoopConfig(rate_hz=rate_hz, duration_s=seconds),
        drive_speed=0.5,
        on_record=records.append,
    )
    loop.run()
    return loop, records


def test_fixed_rate_ticks_on_schedule_and_times_each_stage() -> None:
    loop, records = run_loop(work_s=0.005, rate_hz=20.0, seconds=0.99)
    ticks = [r.t_tick for r in records]
    assert len(ticks) == 20
    assert np.allclose(np.diff(ticks), 0.05)
    assert loop.stats.overruns == 0
    stats = {s.stage: s for s in loop.summary("test").stages}
    assert stats["inference"].p50_ms == pytest.approx(5.0)
    assert stats["latency"].p99_ms == pytest.approx(5.0)  # capture → command written: the network's time
    assert stats["capture"].p50_ms == pytest.approx(0.0)
    assert records[5].ack is not None and records[5].ack.state in ("ARMED", "DRIVING")


def test_overruns_are_counted_and_the_schedule_restarts() -> None:
    loop, records = run_loop(work_s=0.030, rate_hz=50.0, seconds=0.59)  # 30 ms of work in a 20 ms period
    assert len(records) == 20
    assert loop.stats.overruns == len(records)  # every tick overran
    ticks = [r.t_tick for r in records]
    assert np.allclose(np.diff(ticks), 0.030)  # no sleeping, no catch-up bursts


def test_as_fast_as_frames() -> None:
    loop, records = run_loop(work_s=0.004, rate_hz=0.0, seconds=0.398)
    assert len(records) == 100
    assert loop.stats.overruns == 0
