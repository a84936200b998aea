"""`car firmware emulate` and `car firmware ping`, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from car.cli import main
from firmware_bridge.host import Command
from firmware_bridge.link import SerialLink
from firmware_bridge.mcu import FirmwareConfig
from tests.firmware_helpers import virtual_mcu


def test_emulate_prints_a_port_a_host_can_drive() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "car",
            "firmware",
            "emulate",
            "--watchdog-ms",
            "300",
            "--duration",
            "2",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = json.loads(proc.stdout.readline())
        assert header["firmware"]["watchdog_ms"] == 300 and header["pty"].startswith("/dev/")
        with SerialLink(header["port"]) as link:
            assert link.handshake().watchdog_ms == 300
            link.arm()
            ack = link.wait_ack(link.send(Command.drive(0.25)), 1.0)
            assert ack is not None and ack.motor_left == 250
            time.sleep(0.1)  # long enough for the emulator's 20 ms status poll to see it
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    states = [json.loads(line)["state"] for line in out.splitlines() if line.startswith("{")]
    assert "DRIVING" in states


def test_emulate_rejects_bad_limits_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["firmware", "emulate", "--speed-max", "2000"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("car firmware: error: invalid firmware settings") and "--speed-max" in err
    assert "\n" not in err


def test_ping_reports_firmware_rtt_and_counters(capsys: pytest.CaptureFixture[str]) -> None:
    with virtual_mcu(FirmwareConfig(watchdog_ms=200)) as mcu:
        assert main(["firmware", "ping", mcu.path, "--count", "10", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["firmware"]["watchdog_ms"] == 200 and figures["state"] == "DISARMED"
    assert 0 < figures["rtt_ms_p50"] <= figures["rtt_ms_max"]
    assert figures["counters"]["crc_errors"] == 0
