"""The host link tests of tests/test_link.py, run unchanged against the real AVR firmware in simavr.

Each test body below is the very function from tests/test_link.py; only `virtual_mcu` (the context
manager those bodies start their microcontroller with) is swapped for one that starts the emulated
ATmega328P. A `FirmwareConfig` other than the default becomes a variant ELF with those constants compiled
in; wire faults (mute, drop, corrupt) happen in the harness between the pty and the emulated UART;
`snapshot()` reads the motors from the emulated H-bridge pins.

Skipped when avr-gcc / simavr are not installed, except under CI=true.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from firmware_bridge.avr_emulator import AvrEmulator, AvrEmulatorConfig, install_hint, missing_tools
from firmware_bridge.mcu import FirmwareConfig

_MISSING = missing_tools()
if _MISSING and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.skip(f"AVR toolchain missing ({', '.join(_MISSING)}): {install_hint()}", allow_module_level=True)

link_tests = pytest.importorskip("tests.test_link")
pty_tests = pytest.importorskip("tests.test_virtual_mcu")

# The tests of tests/test_link.py that talk to a microcontroller on a pty. The others exercise
# socket://, loop:// or the in-process loopback, where no microcontroller runs. Left out as duplicates of
# tests/test_firmware_avr.py, which checks the same on the emulated pins in emulated time:
# test_heartbeats_from_the_loop_keep_the_car_driving (test_heartbeats_keep_the_car_driving) and, below,
# test_virtual_mcu_watchdog_over_a_pty_within_tolerance (test_command_watchdog_stops_in_real_time).
SHARED_TESTS = (
    "test_handshake_reports_firmware_version_watchdog_and_limits",
    "test_handshake_refuses_a_firmware_without_watchdog",
    "test_handshake_refuses_another_protocol_version",
    "test_handshake_times_out_with_a_clear_error_when_the_firmware_is_silent",
    "test_drive_stop_round_trip_with_acks_and_rtt",
    "test_speed_outside_limits_is_clamped_and_reported",
    "test_watchdog_stops_a_silent_host_and_the_host_sees_it_in_the_next_ack",
    "test_send_never_waits_for_the_ack_and_a_missing_ack_is_a_fault",
    "test_corrupt_replies_are_discarded_by_the_host_and_it_resynchronises",
    "test_port_vanishes_is_reported_and_reopened_without_rearming",
    "test_close_sends_stop_at_once",
    "test_spy_url_traces_the_traffic",
    "test_reader_thread_failure_is_surfaced",
)
# The pty-level tests of tests/test_virtual_mcu.py that need nothing beyond what the board shows (the
# others read the firmware's internal counters from the virtual MCU's snapshot).
SHARED_PTY_TESTS = ("test_vanish_removes_the_path_and_reappear_restores_it_rebooted",)


@contextmanager
def avr_mcu(config: FirmwareConfig | None = None, seed: int = 0) -> Iterator[AvrEmulator]:
    """Drop-in for tests.firmware_helpers.virtual_mcu: the same firmware constants, compiled into the ELF."""
    emulator = AvrEmulator(AvrEmulatorConfig(firmware=config or FirmwareConfig()), seed=seed)
    with emulator:
        yield emulator
        assert emulator.error is None, emulator.error


def run_with_avr(module: ModuleType, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    body: Callable[..., None] = getattr(module, name)
    monkeypatch.setattr(module, "virtual_mcu", avr_mcu)
    if "tmp_path" in inspect.signature(body).parameters:
        body(tmp_path=tmp_path)
    else:
        body()


@pytest.mark.parametrize("name", SHARED_TESTS)
def test_link_against_the_emulated_firmware(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_with_avr(link_tests, name, monkeypatch, tmp_path)


@pytest.mark.parametrize("name", SHARED_PTY_TESTS)
def test_pty_behaviour_of_the_emulated_firmware(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_with_avr(pty_tests, name, monkeypatch, tmp_path)
