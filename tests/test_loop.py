"""The control loop end to end: simulated world, virtual MCU on a real pty, real onnxruntime, real log.

Also holds the helpers other car tests import (tiny bundles, configs): `tests.test_loop`.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from car.config import CarConfig, LoopConfig, with_overrides
from car.drivelog import DriveLogReader
from car.loop import FrameRules, frame_faults
from car.run_drive import DriveHooks, drive
from car.types import CommandKind, DriveRecord, FaultKind, Reason
from vision.frame import Frame
from vision.labels import GO, STOP

# -- helpers shared by the car tests -------------------------------------------------------------------------

_BUNDLES: dict[str, Path] = {}


def tiny_bundle(root: Path, kind: str) -> Path:
    """A small EdgeNet bundle, built once per test session: "always_go" (P(STOP) ≈ 0.02 on every frame),
    "always_stop" (P(STOP) ≈ 0.98) or "random" (seeded random weights: outputs vary from frame to frame)."""
    if kind in _BUNDLES:
        return _BUNDLES[kind]
    import torch

    from vision.export import build_bundle
    from vision.networks import EdgeNet

    torch.manual_seed(0)
    net = EdgeNet()
    last = net.classifier[-2]
    with torch.no_grad():
        if kind in ("always_go", "always_stop"):
            last.weight.zero_()
            last.bias.copy_(torch.tensor([4.0, -4.0] if kind == "always_go" else [-4.0, 4.0]))
        else:
            last.weight.mul_(40.0)
    path = root / kind
    build_bundle(net, "edge", path, name=f"test-{kind}")
    _BUNDLES[kind] = path
    return path


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {kind: tiny_bundle(root, kind) for kind in ("always_go", "always_stop", "random")}


def assert_paced(records: list[DriveRecord], rate_hz: float, duration_s: float) -> None:
    """The loop's timing, asserted on its own clock (the `t_tick` it logged), never on a wall-clock window:
    it never ticks faster than `rate_hz` (the deadlines step by one period), it ran for the whole
    `duration_s`, and so it made at most `duration_s * rate_hz + 1` ticks plus the final STOP. A busy
    machine makes ticks overrun (fewer ticks); it cannot make more."""
    period = 1.0 / rate_hz
    ticks = [r.t_tick for r in records]
    assert all(b > a for a, b in itertools.pairwise(ticks))
    assert ticks[-1] - ticks[0] >= duration_s - period  # the loop ran its whole duration on its clock
    assert len(records) <= duration_s * rate_hz + 2  # never faster than the rate, plus the final STOP


def sim_config(bundle: Path, *overrides: str) -> CarConfig:
    return with_overrides(CarConfig(), [f"model.bundle={bundle}", *overrides])


def quiet(_line: str) -> None:
    pass


# -- tests ---------------------------------------------------------------------------------------------------


def test_frame_rules() -> None:
    rules = FrameRules.from_config(LoopConfig())
    ok = np.full((224, 224, 3), 120, np.uint8)
    assert frame_faults(Frame(5, 10.0, ok, "t"), 10.01, 4, rules) == []
    kinds = {f.kind for f in frame_faults(Frame(4, 9.0, ok, "t"), 10.0, 4, rules)}
    assert kinds == {FaultKind.REPEATED_SEQ, FaultKind.STALE_FRAME}
    black = np.zeros((224, 224, 3), np.uint8)
    black[0:8, 0:8] = 255  # a few hot pixels do not save a black frame
    assert [f.kind for f in frame_faults(Frame(1, 1.0, black, "t"), 1.0, None, rules)] == [
        FaultKind.BLANK_FRAME
    ]
    white = np.full((50, 60, 3), 250, np.uint8)
    assert frame_faults(Frame(1, 1.0, np.where(ok > 0, 8, 0).astype(np.uint8), "t"), 1.0, None, rules)
    dim = ok.copy()
    dim[::2] = 9  # dim but not black: half the rows are above blank_low
    assert frame_faults(Frame(1, 1.0, dim, "t"), 1.0, None, rules) == []
    assert [f.kind for f in frame_faults(Frame(1, 1.0, white, "t"), 1.0, None, rules)] == [
        FaultKind.BLANK_FRAME
    ]
    gray = np.zeros((224, 224), np.uint8)
    assert [f.kind for f in frame_faults(Frame(1, 1.0, gray, "t"), 1.0, None, rules)] == [FaultKind.BAD_SHAPE]
    floats = np.zeros((224, 224, 3), np.float32)
    assert [f.kind for f in frame_faults(Frame(1, 1.0, floats, "t"), 1.0, None, rules)] == [
        FaultKind.BAD_SHAPE
    ]


def test_closed_loop_drive_moves_the_simulated_car_and_logs_everything(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    log_path = tmp_path / "drive.sqlite"
    motor_seen: list[float] = []
    ready: list[object] = []

    def on_ready(loop: object, mcu: object) -> None:
        ready.append(mcu)

    def on_record(record: object) -> None:
        mcu = ready[0]
        motor_seen.append(mcu.device.motor_fraction)  # type: ignore[attr-defined]

    config = sim_config(bundles["always_go"], "loop.duration_s=1.5")
    result = drive(
        config, log_path=log_path, hooks=DriveHooks(on_ready=on_ready, on_record=on_record), out=quiet
    )

    s = result.summary
    assert s.end_reason == "duration"
    assert s.ticks >= 5  # 30 Hz for 1.5 s on the loop's clock: asserted by assert_paced below
    assert s.frames == s.ticks - 1
    assert dict(s.fault_counts) == {}
    assert max(motor_seen) == pytest.approx(0.5)  # DRIVE 0.5 reached the firmware's motors
    assert 0 < result.startup_s < float("inf")  # a first command went out (how soon: bench/bench_loop.py)
    with DriveLogReader(log_path) as log:
        records = list(log.records())
        assert len(records) == s.ticks
        assert_paced(records, rate_hz=30.0, duration_s=1.5)
        # hysteresis: the first go_frames-1 confident GO frames still STOP
        assert [r.decision.label for r in records[:4]] == [STOP, STOP, GO, GO]
        assert records[0].decision.reason is Reason.AWAITING_GO
        assert all(r.command is not None and r.command.kind is CommandKind.DRIVE for r in records[2:-1])
        last = records[-1]
        assert last.decision.reason is Reason.SHUTDOWN and last.command is not None
        assert last.command.kind is CommandKind.STOP
        # every frame has an image, probabilities, ground truth with a mask, timings and a latency
        for r in records[:-1]:
            assert r.rgb is not None and r.rgb.shape == (224, 224, 3)
            assert r.probs is not None and r.probs.stop < 0.05
            assert r.truth is not None and r.truth.mask is not None and r.truth.scene == "can_path"
            assert r.timings.latency is not None and 0 < r.timings.latency < 0.5
        assert any(r.ack is not None and r.ack.motor_left == pytest.approx(0.5) for r in records)
        distances = [r.truth.distance_m for r in records[:-1] if r.truth is not None]
        assert distances[-1] < distances[0] - 0.1  # the car drove towards the can
        meta = log.meta
        assert meta.bundle_name == "test-always_go" and meta.file_sha256("onnx") is not None
        assert meta.config()["loop"] == {**CarConfig().to_dict()["loop"], "duration_s": 1.5}
        summary = log.summary
        assert summary is not None and summary.ticks == s.ticks
        assert {x.stage for x in summary.stages} >= {"capture", "inference", "send", "latency"}


def test_video_file_source_ends_the_drive_with_stop(bundles: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (320, 240))
    for i in range(10):
        writer.write(np.full((240, 320, 3), 60 + 10 * i, np.uint8))
    writer.release()
    config = sim_config(bundles["always_go"], "source.kind=video", f"source.path={video}")
    result = drive(config, log_path=tmp_path / "v.sqlite", out=quiet)
    assert result.summary.end_reason == "end of stream"
    assert result.summary.frames == 10
    with DriveLogReader(tmp_path / "v.sqlite") as log:
        records = list(log.records())
    assert records[0].rgb is not None and records[0].rgb.shape == (224, 224, 3)  # centre-cropped, resized
    end = records[-2]
    assert [f.kind for f in end.faults] == [FaultKind.END_OF_STREAM] and end.decision.label == STOP
