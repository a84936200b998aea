"""`car camera list` and `car camera check` for real: a live videotestsrc pipeline and an mp4v video file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from car.cli import main
from vision.imageio import read_rgb
from vision.sources.v4l2 import describe_device, list_devices

PIPELINE = (
    "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 ! "
    "videoconvert ! appsink"
)


def test_camera_list_works_with_no_camera(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "video0").write_bytes(b"not a device")  # answers no V4L2 ioctl: left out
    assert list_devices(tmp_path) == [] and describe_device(tmp_path / "video0") is None
    assert main(["camera", "list", "--json"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert isinstance(devices, list)
    assert all({"path", "card", "formats"} <= set(d) for d in devices)


def test_camera_check_on_videotestsrc_reports_30_fps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gi", reason="the camera extra (PyGObject) is not installed")
    argv = [
        "camera",
        "check",
        PIPELINE,
        "--backend",
        "gst",
        "--seconds",
        "1.5",
        "--json",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("fps", "interval_p99_ms", "latency_p50_ms", "dropped", "format", "snapshot"):
        assert key in result, key
    # the rate comes from the frames' stream timestamps and numbering, so it holds on a busy machine
    assert result["fps"] == pytest.approx(30.0, abs=1.0)
    assert result["interval_p50_ms"] == pytest.approx(1000 / 30, abs=2.0)
    assert result["format"] == "RGB" and (result["width"], result["height"]) == (320, 240)
    assert result["latency_p50_ms"] >= 0 and result["frames"] >= 2
    assert read_rgb(result["snapshot"]).shape == (240, 320, 3)
    clip = cv2.VideoCapture(result["clip"])
    assert clip.isOpened() and clip.get(cv2.CAP_PROP_FRAME_COUNT) >= 2
    clip.release()
    assert "backend: gst" in result["config"] and result["ended"] == ""


def test_camera_check_on_a_video_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (160, 120))
    for i in range(15):
        writer.write(np.full((120, 160, 3), 60 + 8 * i, np.uint8))
    writer.release()
    out = tmp_path / "check"
    assert main(["camera", "check", str(path), "--seconds", "10", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ended early: end of stream" in text and "for configs/car.yaml" in text
    assert main(["camera", "check", str(path), "--seconds", "10", "--json", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 1 <= result["frames"] <= 15 and result["fps"] <= 31.0  # played at its own rate, never faster
    assert result["brightness_std"] > 10  # the clip brightens frame by frame: exposure "instability" shows
    assert Path(result["snapshot"]).is_file()


def test_camera_check_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["camera", "check", "/dev/video-none", "--seconds", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot open" in err
