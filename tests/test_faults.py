"""Faults injected one at a time into a real closed-loop drive: each ends in STOP within one loop period and
is logged. Camera and network failures cannot exist here, so thin wrappers around the real source and the
real detector produce them; the serial faults are the virtual microcontroller's own (a real pty vanishing,
a firmware that stops acknowledging). SIGTERM and SIGKILL hit a real `car drive` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import pytest

from car.build import McuHandle
from car.drivelog import DriveLogReader
from car.loop import ControlLoop
from car.run_drive import DriveHooks, drive
from car.types import CommandKind, DriveRecord, FaultKind, Reason
from firmware_bridge.virtual_mcu import FaultInjection
from tests.test_loop import bundles, quiet, sim_config  # noqa: F401  (the fixture is used by name)
from vision.detector import Detector, DetectorError
from vision.frame import Frame
from vision.labels import GO, STOP
from vision.sources import FrameSource, SourceTimeout

PERIOD = 1 / 30
INJECT_AT = 12  # ticks: by then the car has been driving (GO) for several frames
FAULT_TICKS = 4


@dataclass
class Switch:
    """Counts ticks; `active` is true for FAULT_TICKS ticks from INJECT_AT."""

    count: int = 0
    injected_at: float | None = None
    seen: list[int] = field(default_factory=list)

    def step(self) -> bool:
        self.count += 1
        active = INJECT_AT <= self.count < INJECT_AT + FAULT_TICKS
        if active and self.injected_at is None:
            self.injected_at = time.monotonic()
        return active


class FaultySource:
    """The real simulated camera, misbehaving in one way while the switch is on."""

    def __init__(self, inner: FrameSource, mode: str, switch: Switch) -> None:
        self.inner, self.mode, self.switch = inner, mode, switch
        self.name = inner.name
        self._last: Frame | None = None

    def open(self) -> Self:
        self.inner.open()
        return self

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, timeout: float) -> Frame:
        active = self.switch.step()
        if active and self.mode == "camera_stops":
            time.sleep(timeout)
            raise SourceTimeout(f"camera: no frame within {timeout} s")
        frame = self.inner.read(timeout)
        if active and self.mode == "stale":
            frame = Frame(frame.seq, frame.t_capture - 0.5, frame.rgb, frame.source, frame.truth)
        elif active and self.mode == "black":
            frame = Frame(frame.seq, frame.t_capture, np.zeros_like(frame.rgb), frame.source, frame.truth)
        elif active and self.mode == "bad_shape":
            frame = Frame(frame.seq, frame.t_capture, frame.rgb[:, :, 0], frame.source, frame.truth)
        elif active and self.mode == "repeated" and self._last is not None:
            frame = Frame(self._last.seq, frame.t_capture, frame.rgb, frame.source, frame.truth)
        self._last = frame
        return frame


class FaultyDetector:
    """The real onnxruntime detector, raising or answering NaN while the switch is on."""

    def __init__(self, inner: Detector, mode: str, switch: Switch) -> None:
        self.inner, self.mode, self.switch = inner, mode, switch
        self.input_size = inner.input_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        active = self.switch.step()
        out = self.inner.predict(batch)
        if active and self.mode == "model_error":
            raise DetectorError("onnxruntime: injected failure")
        if active and self.mode == "nan":
            return np.full_like(out, np.nan)
        return out


EXPECTED = {
    "camera_stops": FaultKind.NO_FRAME,
    "stale": FaultKind.STALE_FRAME,
    "black": FaultKind.BLANK_FRAME,
    "bad_shape": FaultKind.BAD_SHAPE,
    "repeated": FaultKind.REPEATED_SEQ,
    "model_error": FaultKind.INFERENCE_ERROR,
    "nan": FaultKind.INFERENCE_NAN,
    "serial_vanishes": FaultKind.LINK_LOST,
    "acks_stop": FaultKind.ACK_MISSING,
}


def ended_by_ticks(hooks: DriveHooks, switch: Switch) -> DriveHooks:
    """The drive ends a few ticks after the fault is over, counted in ticks, not seconds: on a busy machine
    a tick can take several periods, and a fixed duration would end the drive before the fault."""
    loops: list[ControlLoop] = []

    def on_ready(loop: ControlLoop, mcu: McuHandle) -> None:
        loops.append(loop)
        if hooks.on_ready is not None:
            hooks.on_ready(loop, mcu)

    def on_record(record: DriveRecord) -> None:
        if hooks.on_record is not None:
            hooks.on_record(record)
        if switch.count >= INJECT_AT + FAULT_TICKS + 3 and loops:
            loops[0].request_stop("test: the fault is over")

    return replace(hooks, on_ready=on_ready, on_record=on_record)


def hooks_for(mode: str, switch: Switch) -> DriveHooks:
    return ended_by_ticks(_fault_hooks(mode, switch), switch)


def _fault_hooks(mode: str, switch: Switch) -> DriveHooks:
    if mode in ("model_error", "nan"):
        return DriveHooks(wrap_detector=lambda d: FaultyDetector(d, mode, switch))
    if mode in ("serial_vanishes", "acks_stop"):
        devices: list[object] = []

        def on_record(record: DriveRecord) -> None:
            if switch.step() and switch.count == INJECT_AT:
                mcu = devices[0]
                if mode == "serial_vanishes":
                    mcu.vanish()  # type: ignore[attr-defined]
                else:
                    mcu.set_faults(FaultInjection(mute=True))  # type: ignore[attr-defined]

        return DriveHooks(on_ready=lambda loop, mcu: devices.append(mcu.device), on_record=on_record)
    return DriveHooks(wrap_source=lambda s: FaultySource(s, mode, switch))


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_fault_stops_within_one_period_and_is_logged(
    mode: str,
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    switch = Switch()
    log_path = tmp_path / "drive.sqlite"
    config = sim_config(bundles["always_go"], "loop.duration_s=30")  # a fuse: it ends by ticks
    result = drive(config, log_path=log_path, hooks=hooks_for(mode, switch), out=quiet)
    expected = EXPECTED[mode]
    assert dict(result.summary.fault_counts).get(expected.value, 0) >= 1
    with DriveLogReader(log_path) as log:
        records = list(log.records(images=False))
    first = next(r for r in records if any(f.kind is expected for f in r.faults))
    before = records[first.seq - 1]
    assert before.decision.label == GO, "the car was driving before the fault"
    assert first.decision.label == STOP and first.decision.reason is Reason.FAULT
    detail = next(f.detail for f in first.faults if f.kind is expected)
    assert detail, "the fault's reason is logged"
    if mode != "serial_vanishes":  # with the port gone, nothing can be written: the firmware watchdog stops
        assert first.command is not None and first.command.kind is CommandKind.STOP
        assert first.command.t_written is not None
        # when the fault could be known
        known = first.t_tick  # a bad frame or a failed inference: in the same tick
        if mode == "camera_stops":  # the first frame that did not come, plus the read timeout
            known = before.t_tick + PERIOD + config.loop.frame_timeout_s
        if mode == "acks_stop":  # the first command left unanswered, plus the ACK timeout
            assert switch.injected_at is not None
            unanswered = next(r for r in records if r.t_tick > switch.injected_at and r.command is not None)
            assert unanswered.command is not None and unanswered.command.t_written is not None
            known = unanswered.command.t_written + config.link.ack_timeout_s
        # On the loop's own clock, not a wall-clock window: the STOP left in the very tick that logged the
        # fault (before the next tick began), and no earlier tick could have known of it.
        after = records[first.seq + 1] if first.seq + 1 < len(records) else None
        assert first.t_tick <= first.command.t_written
        assert after is None or first.command.t_written <= after.t_tick
        assert before.t_tick < known
    else:
        assert first.seq <= INJECT_AT + 1
    # and the car stays stopped while the fault lasts
    for r in records[first.seq : first.seq + 2]:
        assert r.decision.label == STOP


def test_exception_in_the_loop_stops_and_is_logged(bundles: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    log_path = tmp_path / "drive.sqlite"

    def on_record(record: DriveRecord) -> None:
        if record.seq == INJECT_AT:
            raise RuntimeError("injected bug")

    with pytest.raises(RuntimeError, match="injected bug"):
        drive(
            sim_config(bundles["always_go"], "loop.duration_s=5"),
            log_path=log_path,
            hooks=DriveHooks(on_record=on_record),
            out=quiet,
        )
    with DriveLogReader(log_path) as log:
        records = list(log.records(images=False))
        summary = log.summary
    last = records[-1]
    assert [f.kind for f in last.faults] == [FaultKind.EXCEPTION]
    assert "injected bug" in last.faults[0].detail
    assert last.command is not None and last.command.kind is CommandKind.STOP
    assert records[-2].decision.label == GO
    assert summary is not None and summary.end_reason.startswith("exception")


# -- real processes ------------------------------------------------------------------------------------------


def start_drive(bundle: Path, log_path: Path, seconds: float) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "car",
        "drive",
        "--set",
        f"model.bundle={bundle}",
        "--duration",
        str(seconds),
        "--log",
        str(log_path),
        "--json",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_records(log_path: Path, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists():
            try:
                with DriveLogReader(log_path) as log:
                    if len(log) >= n:
                        return
            except Exception:
                pass
        time.sleep(0.1)
    raise AssertionError(f"{log_path}: fewer than {n} records after {timeout} s")


def test_sigterm_sends_stop_and_closes_cleanly(bundles: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    log_path = tmp_path / "term.sqlite"
    proc = start_drive(bundles["always_go"], log_path, 60)
    try:
        wait_for_records(log_path, 15)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["end_reason"] == "SIGTERM"
    with DriveLogReader(log_path) as log:
        records = list(log.records(images=False))
        assert log.summary is not None and log.summary.end_reason == "SIGTERM"
    signalled = [r for r in records if any(f.kind is FaultKind.SIGNAL for f in r.faults)]
    assert signalled and signalled[0].decision.label == STOP
    assert signalled[0].command is not None and signalled[0].command.kind is CommandKind.STOP
    assert records[-1].command is not None and records[-1].command.kind is CommandKind.STOP


def test_sigkill_leaves_a_readable_log_up_to_the_last_second(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "kill.sqlite"
    proc = start_drive(bundles["always_go"], log_path, 60)
    try:
        wait_for_records(log_path, 30)
        time.sleep(0.5)
        killed_at = time.monotonic()  # the same clock the log's tick times use
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with DriveLogReader(log_path) as log:
        assert log.summary is None  # it never ended cleanly
        records = list(log.records())
        assert log.meta.bundle_name == "test-always_go"
    assert len(records) >= 30
    assert [r.seq for r in records] == list(range(len(records)))  # nothing missing before the last commit
    assert killed_at - records[-1].t_tick <= 1.0  # committed at most a second before the kill
    assert all(r.rgb is not None for r in records)  # frames included
