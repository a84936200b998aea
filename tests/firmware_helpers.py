"""Shared helpers for the firmware bridge tests (no fixtures: plain functions and context managers)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import serial

from firmware_bridge.link import SerialLink
from firmware_bridge.mcu import FirmwareConfig
from firmware_bridge.protocol import MCU_TO_HOST, FrameParser, WireFrame
from firmware_bridge.virtual_mcu import VirtualMcu

VECTORS_PATH = Path(__file__).resolve().parent.parent / "firmware_bridge" / "test_vectors.json"


def load_vectors() -> dict[str, Any]:
    data = json.loads(VECTORS_PATH.read_text())
    assert isinstance(data, dict)
    return data


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def wait_until(predicate: Callable[[], bool], timeout_s: float = 2.0, poll_s: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


def watchdog_silence_s(mcu: object) -> float:
    """On the microcontroller's own clock: from the command that last set the motors going to the command
    watchdog stopping them. The virtual MCU stamps both on its core; the emulated AVR's pin trace has them
    in emulated time. A busy machine delays the test thread, not these stamps."""
    from firmware_bridge.avr_emulator import AvrEmulator

    if isinstance(mcu, AvrEmulator):
        samples = mcu.pin_samples()
        moving = [s.left.permille != 0 for s in samples]
        stop = max(i for i in range(1, len(samples)) if moving[i - 1] and not moving[i])
        start = max(i for i in range(stop) if moving[i] and (i == 0 or not moving[i - 1]))
        return samples[stop].emulated_s - samples[start].emulated_s
    assert isinstance(mcu, VirtualMcu)
    silence = mcu.snapshot().watchdog_silence
    assert silence is not None, "the watchdog never fired"
    return silence


@contextmanager
def virtual_mcu(config: FirmwareConfig | None = None, seed: int = 0) -> Iterator[VirtualMcu]:
    mcu = VirtualMcu(config, seed=seed)
    with mcu:
        yield mcu
    assert mcu.error is None, f"virtual MCU thread died: {mcu.error!r}"


@contextmanager
def armed_link(mcu: VirtualMcu, **kwargs: object) -> Iterator[SerialLink]:
    link = SerialLink(mcu.path, **kwargs)  # type: ignore[arg-type]
    with link:
        link.handshake()
        link.arm()
        yield link


@contextmanager
def raw_port(path: str) -> Iterator[serial.Serial]:
    """The pty opened with plain pyserial: for writing bytes no well-behaved host would send."""
    port = serial.Serial(path, 115200, timeout=0.05)
    try:
        yield port
    finally:
        port.close()


def read_frames(port: serial.Serial, count: int, timeout_s: float = 1.0) -> list[WireFrame]:
    """Read MCU frames from a raw port until `count` decoded or the timeout."""
    parser = FrameParser(MCU_TO_HOST)
    frames: list[WireFrame] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < count and time.monotonic() < deadline:
        data = port.read(max(1, port.in_waiting))
        frames += [e for e in parser.feed(data) if isinstance(e, WireFrame)]
    return frames
