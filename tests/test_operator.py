"""The operator's inbox in the control loop: e-stop latch, resume, teleop and the dead-man rule.

Timing is asserted on the loop's `SimulatedClock` and in ticks, never in wall time. Everything but the
detector is real: the loop, the policy, the firmware core behind the host session (in-process, same clock).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from car.config import LoopConfig
from car.links import BridgeMotorLink
from car.loop import ControlLoop, NullSink
from car.operator import OperatorInbox
from car.policy import Policy, PolicyParams
from car.timing import SimulatedClock
from car.types import CommandKind, DriveRecord, FaultKind, Reason
from firmware_bridge.loopback import LoopbackLink
from tests.test_loop_timing import FlatWorld
from vision.preprocess import Preprocessing
from vision.sources import SimSource

RATE_HZ = 20.0  # one tick = 50 ms of loop clock


class FixedDetector:
    """Gives the same P(STOP) for every frame and takes 1 ms of simulated time."""

    input_size = 224

    def __init__(self, clock: SimulatedClock, p_stop: float) -> None:
        self.clock, self.p_stop = clock, p_stop

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.clock.advance(0.001)
        return np.tile(np.array([[1.0 - self.p_stop, self.p_stop]], np.float32), (batch.shape[0], 1))


def run_with(
    inbox: OperatorInbox, act: Callable[[DriveRecord], None], ticks: int, p_stop: float = 0.01
) -> tuple[list[DriveRecord], LoopbackLink]:
    clock = SimulatedClock(100.0)
    link = LoopbackLink(clock=clock.now)
    link.open()
    link.handshake()
    link.arm()
    records: list[DriveRecord] = []

    def on_record(record: DriveRecord) -> None:
        records.append(record)
        act(record)

    loop = ControlLoop(
        source=SimSource(FlatWorld(), lambda: 0.0, fps=0.0, clock=clock),
        detector=FixedDetector(clock, p_stop),
        preprocessing=Preprocessing(),
        policy=Policy(PolicyParams(0.5, 3, 0.1)),
        link=BridgeMotorLink(link),
        sink=NullSink(),
        clock=clock,
        config=LoopConfig(rate_hz=RATE_HZ, duration_s=(ticks - 0.5) / RATE_HZ),
        drive_speed=0.5,
        on_record=on_record,
        operator=inbox,
    )
    loop.run()
    return records, link


def kinds(record: DriveRecord) -> set[FaultKind]:
    return {f.kind for f in record.faults}


def test_estop_stops_on_the_next_tick_latches_and_resume_needs_confident_go() -> None:
    inbox = OperatorInbox()

    def act(record: DriveRecord) -> None:
        if record.seq == 10:
            inbox.emergency_stop("test")
        if record.seq == 20:
            inbox.resume()

    records, _ = run_with(inbox, act, ticks=30)
    assert not records[10].decision.is_stop  # driving when the button was pressed
    for r in records[11:21]:  # the very next tick sends STOP, and every tick until Resume
        assert r.decision.is_stop and r.decision.reason is Reason.FAULT
        assert FaultKind.OPERATOR_STOP in kinds(r)
        assert r.command is not None and r.command.kind is CommandKind.STOP
    # Resume: the policy's hysteresis still applies (3 confident GO frames)
    assert [r.decision.reason for r in records[21:24]] == [
        Reason.AWAITING_GO,
        Reason.AWAITING_GO,
        Reason.GO_CONFIDENT,
    ]
    assert not records[23].decision.is_stop and FaultKind.OPERATOR_STOP not in kinds(records[23])


def test_teleop_drives_at_the_limited_speed_and_the_network_runs_in_shadow() -> None:
    inbox = OperatorInbox(manual=True, max_speed=0.3)

    def act(record: DriveRecord) -> None:
        if 5 <= record.seq < 15:  # a key held: the page repeats its message
            inbox.teleop(True, speed=0.9)
        elif record.seq == 15:  # released
            inbox.teleop(False)

    records, _ = run_with(inbox, act, ticks=20, p_stop=0.95)  # the network says STOP throughout
    assert all(r.decision.is_stop for r in records[:6])  # nothing held yet
    for r in records[6:16]:
        assert not r.decision.is_stop and r.decision.reason is Reason.MANUAL
        assert r.command is not None and r.command.kind is CommandKind.DRIVE
        assert r.command.speed == pytest.approx(0.3)  # clamped to the limit
        assert r.probs is not None and r.probs.stop == pytest.approx(0.95)  # shadow: logged, not obeyed
    assert records[16].decision.is_stop and records[16].decision.reason is Reason.MANUAL  # released


def test_dead_man_stops_when_messages_stop_arriving() -> None:
    inbox = OperatorInbox(manual=True, max_speed=0.5)

    def act(record: DriveRecord) -> None:
        if record.seq == 4:  # one "held" message, then silence (a frozen page, a lost network)
            inbox.teleop(True)

    records, _ = run_with(inbox, act, ticks=20)
    heard = records[5].t_tick  # the tick that received the message
    driving = [r for r in records if not r.decision.is_stop]
    assert driving[0].seq == 5
    # Measured on the loop's clock: GO while the newest message is at most 250 ms old, STOP after.
    assert all(r.t_tick - heard <= 0.25 + 1e-9 for r in driving)
    first_stop = next(r for r in records[6:] if r.decision.is_stop)
    assert first_stop.t_tick - heard > 0.25
    assert first_stop.seq == driving[-1].seq + 1
    assert len(driving) == 6  # ticks at +0, +50, ..., +250 ms
    assert all(r.decision.is_stop for r in records[first_stop.seq :])


def test_estop_overrides_teleop() -> None:
    inbox = OperatorInbox(manual=True)

    def act(record: DriveRecord) -> None:
        inbox.teleop(True)
        if record.seq == 5:
            inbox.emergency_stop("test")

    records, _ = run_with(inbox, act, ticks=12)
    assert not records[5].decision.is_stop
    assert all(r.decision.is_stop and FaultKind.OPERATOR_STOP in kinds(r) for r in records[6:])


def test_an_idle_operator_leaves_the_loop_as_it_was() -> None:
    records, _ = run_with(OperatorInbox(), lambda r: None, ticks=6)
    assert [r.decision.reason for r in records[:4]] == [
        Reason.AWAITING_GO,
        Reason.AWAITING_GO,
        Reason.GO_CONFIDENT,
        Reason.GO_CONFIDENT,
    ]
