"""`car drive --config configs/sim-avr.yaml`: the closed-loop simulated drive on the emulated AVR firmware.

Skipped when avr-gcc / simavr are not installed, except under CI=true.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from car.config import load_config, with_overrides
from car.drivelog import DriveLogReader
from car.run_drive import DriveHooks, drive
from car.types import CommandKind
from firmware_bridge.avr_emulator import AvrEmulator, install_hint, missing_tools

_MISSING = missing_tools()
if _MISSING and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.skip(f"AVR toolchain missing ({', '.join(_MISSING)}): {install_hint()}", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
SIM_AVR = REPO / "configs" / "sim-avr.yaml"


def test_sim_avr_config_selects_the_emulated_firmware() -> None:
    config = load_config(SIM_AVR)
    assert config.link.mcu == "avr"
    default = load_config(REPO / "configs" / "sim.yaml")
    assert config.source == default.source and config.loop == default.loop  # only the MCU differs


def test_closed_loop_drive_on_the_emulated_firmware(tmp_path: Path) -> None:
    from tests.test_loop import assert_paced, quiet, tiny_bundle

    bundle = tiny_bundle(tmp_path / "bundles", "always_go")
    config = with_overrides(load_config(SIM_AVR), [f"model.bundle={bundle}", "loop.duration_s=1.5"])
    devices: list[AvrEmulator] = []
    pin_motor: list[float] = []

    def on_ready(loop: object, mcu: object) -> None:
        device = mcu.device  # type: ignore[attr-defined]
        assert isinstance(device, AvrEmulator)
        devices.append(device)

    def on_record(record: object) -> None:
        pin_motor.append(devices[0].motor_fraction)  # read from the emulated H-bridge pins

    log_path = tmp_path / "drive.sqlite"
    result = drive(
        config, log_path=log_path, hooks=DriveHooks(on_ready=on_ready, on_record=on_record), out=quiet
    )
    s = result.summary
    assert s.end_reason == "duration"
    assert dict(s.fault_counts) == {}
    assert s.ticks >= 3  # 30 Hz for 1.5 s on the loop's clock: asserted by assert_paced below
    assert max(pin_motor) == pytest.approx(0.5)  # DRIVE 0.5 reached the emulated motor pins
    assert "1.0.0" in result.firmware
    with DriveLogReader(log_path) as log:
        records = list(log.records())
    acks = [r.ack for r in records if r.ack is not None]
    assert len(acks) >= s.ticks - 2
    assert_paced(records, rate_hz=30.0, duration_s=1.5)
    assert any(a.motor_left == pytest.approx(0.5) and a.state == "DRIVING" for a in acks)
    # every ACK came within the ack bound: a later one would be an ack_missing fault (none above)
    assert all(a.rtt_s > 0 for a in acks if a.rtt_s is not None)
    distances = [
        r.truth.distance_m for r in records[:-1] if r.truth is not None and r.truth.distance_m is not None
    ]
    assert distances[-1] < distances[0] - 0.1  # the firmware's motor output moved the simulated car
    assert records[-1].command is not None and records[-1].command.kind is CommandKind.STOP
    stats = devices[0].stats
    assert stats is not None  # its lag (stats.max_lag_ms) measures the machine, not the firmware
    assert not devices[0].is_running  # stopped at the end of the drive
