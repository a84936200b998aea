"""The reference firmware (McuCore) against the scenario vectors, and the VirtualMcu on a real pty."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.mcu import FirmwareConfig, McuCore
from firmware_bridge.protocol import (
    MCU_TO_HOST,
    Ack,
    AckResult,
    Arm,
    Drive,
    FaultCode,
    FaultReport,
    FirmwareState,
    FrameParser,
    Heartbeat,
    Hello,
    Status,
    StatusRequest,
    Stop,
    Version,
    WireFrame,
    encode,
)
from firmware_bridge.virtual_mcu import FaultInjection, VirtualMcu
from tests.firmware_helpers import (
    load_vectors,
    raw_port,
    read_frames,
    unhex,
    virtual_mcu,
    wait_until,
    watchdog_silence_s,
)

VECTORS = load_vectors()


def replies(data: bytes) -> list[Any]:
    return [e.message for e in FrameParser(MCU_TO_HOST).feed(data) if isinstance(e, WireFrame)]


# ------------------------------------------------------------------------------- the pure core


@pytest.mark.parametrize("scenario", VECTORS["scenarios"], ids=lambda s: s["name"])
def test_core_follows_scenario_vector(scenario: dict[str, Any]) -> None:
    core = McuCore(FirmwareConfig())
    steps = {s["t_ms"]: unhex(s["hex"]) for s in scenario["steps"]}
    got: list[dict[str, Any]] = []
    for t_ms in range(scenario["end_ms"] + 1):
        out = b""
        if t_ms in steps:
            out += core.feed(steps[t_ms], t_ms / 1000.0)
        out += core.tick(t_ms / 1000.0)
        got += [
            {"t_ms": t_ms, "hex": e.raw.hex(" ")}
            for e in FrameParser(MCU_TO_HOST).feed(out)
            if isinstance(e, WireFrame)
        ]
    assert got == scenario["replies"]
    final = scenario["final"]
    assert (core.state.name, core.motor_left, core.motor_right) == (
        final["state"],
        final["motor_left"],
        final["motor_right"],
    )


def test_core_boots_disarmed_and_refuses_to_drive() -> None:
    core = McuCore()
    assert core.state is FirmwareState.DISARMED and core.motor_left == 0
    (ack,) = replies(core.feed(encode(Drive(800), 0), 0.0))
    assert ack.result is AckResult.NOT_ARMED and core.motor_left == 0


@pytest.mark.parametrize("watchdog_ms", [50, 250])
def test_core_watchdog_fires_exactly_at_its_timeout(watchdog_ms: int) -> None:
    core = McuCore(FirmwareConfig(watchdog_ms=watchdog_ms))
    core.feed(encode(Arm(), 0) + encode(Drive(500), 1), 1.0)
    assert core.motor_left == 500
    assert core.tick(1.0 + watchdog_ms / 1000.0 - 1e-4) == b"" and core.motor_left == 500
    (fault,) = replies(core.tick(1.0 + watchdog_ms / 1000.0))
    assert fault == FaultReport(FaultCode.WATCHDOG, 0, FirmwareState.WATCHDOG, 1)
    assert core.motor_left == 0 and core.state is FirmwareState.WATCHDOG
    # the host's next frame is answered with the WATCHDOG state; DRIVE stays refused until ARM
    (ack,) = replies(core.feed(encode(Drive(500), 2), 2.0))
    assert ack.state is FirmwareState.WATCHDOG and ack.result is AckResult.NOT_ARMED and core.motor_left == 0


def test_core_stop_always_wins_in_every_state() -> None:
    for prelude in ([], [Arm()], [Arm(), Drive(700)], [Arm(), Drive(700), Heartbeat()]):
        core = McuCore()
        core.feed(b"".join(encode(m, i) for i, m in enumerate(prelude)), 0.0)
        (ack,) = replies(core.feed(encode(Stop(), 9), 0.01))
        assert isinstance(ack, Ack) and ack.motor_left == ack.motor_right == 0 and core.motor_left == 0


def test_core_clamps_and_counts() -> None:
    core = McuCore(FirmwareConfig(speed_min=-200, speed_max=300))
    core.feed(encode(Arm(), 0), 0.0)
    (ack,) = replies(core.feed(encode(Drive(900), 1), 0.0))
    assert ack.result is AckResult.CLAMPED and ack.motor_left == 300
    (ack,) = replies(core.feed(encode(Drive(-900), 2), 0.0))
    assert ack.result is AckResult.CLAMPED and ack.motor_left == -200
    (status,) = replies(core.feed(encode(StatusRequest(), 3), 0.0))
    assert isinstance(status, Status) and status.clamped == 2


def test_core_counters_saturate_at_u16() -> None:
    core = McuCore()
    core.feed(b"\xa5\xff" * 70000, 0.0)
    assert core.counters.oversized == 65535 and core.counters.discarded == 65535


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.integers(-1000, 1000).filter(lambda v: v != 0),
    st.integers(0, 255),
    st.lists(st.integers(0, 63), min_size=1, max_size=3, unique=True),
)
def test_core_corrupt_drive_never_moves_the_motors(speed: int, seq: int, bits: list[int]) -> None:
    core = McuCore()
    core.feed(encode(Arm(), 0), 0.0)
    frame = bytearray(encode(Drive(speed), seq))
    for bit in bits:
        frame[bit // 8] ^= 1 << (bit % 8)
    core.feed(bytes(frame), 0.001)
    core.tick(0.1)
    assert core.motor_left == 0 and core.motor_right == 0
    assert core.state is FirmwareState.ARMED


# ------------------------------------------------------------------------------- on a real pty


def test_virtual_mcu_answers_on_a_raw_pty_and_resynchronises_after_garbage() -> None:
    rng_garbage = bytes((i * 37 + 11) % 256 for i in range(3000))  # deterministic, holds many 0xA5
    with virtual_mcu() as mcu, raw_port(mcu.path) as port:
        port.write(encode(Hello(), 0) + encode(Arm(), 1))
        frames = read_frames(port, 2)
        assert [type(f.message).__name__ for f in frames] == ["Version", "Ack"]
        port.write(rng_garbage)
        time.sleep(0.05)  # the line idles: any started candidate is truncated by the gap timeout
        port.reset_input_buffer()
        port.write(encode(Drive(300), 2))
        snap = mcu.snapshot() if wait_until(lambda: mcu.snapshot().motor_left == 300) else None
        acks = [f.message for f in read_frames(port, 1) if isinstance(f.message, Ack)]
        assert acks and acks[-1].acked_seq == 2 and acks[-1].motor_left == 300
        assert snap is not None
        assert snap.motor_left == 300 and snap.counters.discarded > 0 and snap.counters.garbage_bytes > 0


def test_virtual_mcu_corrupted_bytes_never_move_the_motors() -> None:
    with virtual_mcu(seed=3) as mcu, raw_port(mcu.path) as port:
        port.write(encode(Hello(), 0) + encode(Arm(), 1))
        assert len(read_frames(port, 2)) == 2
        mcu.set_faults(FaultInjection(corrupt_rx=1.0))  # every byte gets one bit flipped
        written = mcu.snapshot().bytes_received
        for seq in range(2, 40):
            written += port.write(encode(Drive(900), seq)) or 0
            time.sleep(0.002)
            assert mcu.snapshot().motor_left == 0
        # every corrupted byte must have reached the MCU before the faults go: on a busy machine the
        # last writes may still wait in the pty, and would then arrive intact
        assert wait_until(lambda: mcu.snapshot().bytes_received >= written, timeout_s=10.0)
        mcu.set_faults(FaultInjection())
        for seq in range(40, 80):  # SOF intact, one other bit flipped: the CRC must catch it
            frame = bytearray(encode(Drive(900), seq))
            frame[1 + seq % 7] ^= 1 << (seq % 8)
            port.write(bytes(frame))
            time.sleep(0.002)
            assert mcu.snapshot().motor_left == 0
        time.sleep(0.03)
        snap = mcu.snapshot()
        assert (
            snap.motor_left == 0 and snap.state is not FirmwareState.DRIVING
        )  # WATCHDOG if the test was slow
        assert (
            snap.counters.garbage_bytes >= 8 * 38 and snap.counters.crc_errors + snap.counters.oversized > 0
        )


def test_virtual_mcu_watchdog_over_a_pty_within_tolerance() -> None:
    """PROTOCOL.md §6: fire no earlier than the timeout; the virtual MCU adds its 2 ms tick + scheduling."""
    with virtual_mcu(FirmwareConfig(watchdog_ms=100)) as mcu, raw_port(mcu.path) as port:
        port.write(encode(Arm(), 0) + encode(Drive(500), 1))
        assert wait_until(lambda: mcu.snapshot().motor_left == 500, timeout_s=10.0)
        assert wait_until(lambda: mcu.snapshot().motor_left == 0, timeout_s=10.0)
        assert 0.100 <= watchdog_silence_s(mcu) <= 0.100 + 0.060  # on the MCU's own clock
        frames = read_frames(port, 3)
        assert isinstance(frames[-1].message, FaultReport) and frames[-1].message.code is FaultCode.WATCHDOG


def test_virtual_mcu_mute_and_delay_injection() -> None:
    with virtual_mcu() as mcu, raw_port(mcu.path) as port:
        mcu.set_faults(FaultInjection(mute=True))
        port.write(encode(Hello(), 0))
        assert read_frames(port, 1, 0.1) == []
        mcu.set_faults(FaultInjection(reply_delay_s=0.05))
        t0 = time.monotonic()
        port.write(encode(Hello(), 1))
        assert len(read_frames(port, 1, 1.0)) == 1
        assert time.monotonic() - t0 >= 0.045


def test_vanish_removes_the_path_and_reappear_restores_it_rebooted() -> None:
    with virtual_mcu() as mcu:
        with raw_port(mcu.path) as port:
            port.write(encode(Arm(), 0))
            assert read_frames(port, 1)
        mcu.vanish()
        assert not os.path.exists(mcu.path) and mcu.pty_name is None
        mcu.reappear()
        assert os.path.exists(mcu.path) and mcu.pty_name is not None
        assert mcu.state is FirmwareState.DISARMED
        with raw_port(mcu.path) as port:
            port.write(encode(Hello(), 0))
            assert isinstance(read_frames(port, 1)[0].message, Version)


def test_virtual_mcu_cleans_up_its_path() -> None:
    mcu = VirtualMcu()
    with mcu:
        path = mcu.path
        assert os.path.islink(path)
    assert not os.path.exists(path)


def test_fault_injection_rejects_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultInjection(drop_rx=1.5)
