"""V4L2 through OpenCV and picamera2, with stand-ins only for the camera hardware that cannot exist here:
the requests made (MJPEG where offered, a one-frame buffer, size and rate, exposure and white-balance
locks) and what is reported when the driver gives something else or refuses."""

from __future__ import annotations

import sys
import time
import types
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from vision.sources import CameraSource, SourceOpenError, open_camera
from vision.sources.base import source_info
from vision.sources.registry import OpenCvOptions, Picamera2Options


class FakeV4l2Capture:
    """A V4L2 camera as OpenCV shows it: properties that may or may not take, frames from a sensor."""

    def __init__(self, gives: dict[int, float], refuses: tuple[int, ...] = ()) -> None:
        self.props: dict[int, float] = {
            cv2.CAP_PROP_FRAME_WIDTH: 640.0,
            cv2.CAP_PROP_FRAME_HEIGHT: 480.0,
            cv2.CAP_PROP_FPS: 30.0,
            cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter.fourcc(*"YUYV")),
            cv2.CAP_PROP_EXPOSURE: 156.0,
            cv2.CAP_PROP_WB_TEMPERATURE: 4600.0,
        }
        self.gives, self.refuses = gives, refuses
        self.calls: list[tuple[int, float]] = []

    def isOpened(self) -> bool:
        return True

    def set(self, prop: int, value: float) -> bool:
        self.calls.append((prop, value))
        if prop in self.refuses:
            return False
        self.props[prop] = self.gives.get(prop, value)
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def read(self) -> tuple[bool, np.ndarray]:
        time.sleep(0.005)
        return True, np.full((480, 640, 3), 90, np.uint8)

    def release(self) -> None:
        pass


def open_fake(
    monkeypatch: pytest.MonkeyPatch, fake: FakeV4l2Capture, offers_mjpeg: bool, **kw: Any
) -> CameraSource:
    monkeypatch.setattr("vision.sources.opencv.offers_mjpeg", lambda device: offers_mjpeg)
    return CameraSource("0", backend="v4l2", capture_factory=lambda d, a: fake, **kw)  # type: ignore[arg-type,return-value]


def test_v4l2_asks_for_mjpeg_size_rate_and_one_buffer_and_checks_what_it_got(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mjpg = float(cv2.VideoWriter.fourcc(*"MJPG"))
    fake = FakeV4l2Capture(gives={})
    with open_fake(monkeypatch, fake, True, width=640, height=480, fps=30.0) as camera:
        camera.read(2.0)
        info = camera.info()
    assert (cv2.CAP_PROP_FOURCC, mjpg) in fake.calls
    assert fake.calls.index((cv2.CAP_PROP_FOURCC, mjpg)) < fake.calls.index((cv2.CAP_PROP_FRAME_WIDTH, 640))
    assert (cv2.CAP_PROP_BUFFERSIZE, 1) in fake.calls
    assert info["format"] == "MJPG" and info["width"] == 640 and info["warnings"] == []


def test_v4l2_reports_a_mismatch_and_asks_no_mjpeg_where_none_is_offered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeV4l2Capture(gives={cv2.CAP_PROP_FRAME_WIDTH: 320.0, cv2.CAP_PROP_FPS: 15.0},
                           refuses=(cv2.CAP_PROP_BUFFERSIZE,))  # fmt: skip
    with open_fake(monkeypatch, fake, False, width=640, height=480, fps=30.0) as camera:
        info = camera.info()
    assert all(prop != cv2.CAP_PROP_FOURCC for prop, _ in fake.calls)
    warnings = " | ".join(info["warnings"])  # type: ignore[arg-type]
    assert "asked width 640, the driver gives 320" in warnings
    assert "asked fps 30.0, the driver gives 15.0" in warnings
    assert "one-frame buffer" in warnings


def test_v4l2_locks_exposure_and_white_balance_at_the_settled_values(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeV4l2Capture(gives={})
    with open_fake(monkeypatch, fake, False, lock_exposure_after_s=0.02, lock_white_balance=True) as camera:
        while "locked" not in camera.info():
            camera.read(2.0)
        info = camera.info()
    assert (cv2.CAP_PROP_AUTO_EXPOSURE, 1) in fake.calls and (cv2.CAP_PROP_EXPOSURE, 156.0) in fake.calls
    assert (cv2.CAP_PROP_AUTO_WB, 0) in fake.calls and (cv2.CAP_PROP_WB_TEMPERATURE, 4600.0) in fake.calls
    assert info["locked"] == {"exposure": 156.0, "white_balance_k": 4600.0}


def test_v4l2_reports_a_driver_that_refuses_the_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeV4l2Capture(gives={}, refuses=(cv2.CAP_PROP_AUTO_EXPOSURE, cv2.CAP_PROP_AUTO_WB))
    with open_fake(monkeypatch, fake, False, lock_exposure_after_s=0.01, lock_white_balance=True) as camera:
        while "locked" not in camera.info():
            camera.read(2.0)
        warnings = " | ".join(camera.info()["warnings"])  # type: ignore[arg-type]
    assert "does not allow locking the exposure" in warnings
    assert "does not allow locking the white balance" in warnings


# -- picamera2 ------------------------------------------------------------------------------------------


class FakeRequest:
    def __init__(self, bgr: np.ndarray, metadata: dict[str, Any]) -> None:
        self.bgr, self.metadata, self.released = bgr, metadata, False

    def make_array(self, name: str) -> np.ndarray:
        assert name == "main"
        return self.bgr

    def get_metadata(self) -> dict[str, Any]:
        return self.metadata

    def release(self) -> None:
        self.released = True


class FakePicamera2:
    """picamera2's documented Picamera2 class over a sensor that cannot exist here (libcamera hardware)."""

    made: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.config: dict[str, Any] = {}
        self.controls: list[dict[str, Any]] = []
        self.started = self.closed = False
        self.stamps: list[int] = []
        FakePicamera2.made.append(self)

    def create_video_configuration(self, main: dict[str, Any], controls: dict[str, Any]) -> dict[str, Any]:
        return {"main": dict(main), "controls": dict(controls)}

    def configure(self, config: dict[str, Any]) -> None:
        self.config = config

    def start(self) -> None:
        self.started = True

    def capture_request(self, wait: float | None = None) -> FakeRequest:
        time.sleep(0.005)
        w, h = self.config["main"]["size"]
        bgr = np.zeros((h, w, 3), np.uint8)
        bgr[:, :, 0] = 200  # blue in memory order B, G, R
        stamp = time.monotonic_ns() - 3_000_000  # exposed 3 ms before it arrived
        self.stamps.append(stamp)
        return FakeRequest(bgr, {"SensorTimestamp": stamp, "ExposureTime": 9000, "AnalogueGain": 2.0,
                                 "ColourGains": (1.6, 1.9)})  # fmt: skip

    def set_controls(self, controls: dict[str, Any]) -> None:
        self.controls.append(controls)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


def test_picamera2_frames_times_and_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    options = Picamera2Options(device="0", width=320, height=240, fps=30.0, lock_exposure_after_s=0.02,
                               lock_white_balance=True)  # fmt: skip
    source = open_camera("picamera2", options)
    with source:
        first = source.read(2.0)
        while "locked" not in source_info(source):
            source.read(2.0)
    cam = FakePicamera2.made[-1]
    assert cam.config == {"main": {"size": (320, 240), "format": "RGB888"}, "controls": {"FrameRate": 30.0}}
    assert first.rgb.shape == (240, 320, 3) and first.rgb[0, 0].tolist() == [0, 0, 200]  # B,G,R -> R,G,B
    assert first.t_capture == cam.stamps[0] / 1e9  # the sensor's timestamp, not the arrival time
    locked = {"AeEnable": False, "ExposureTime": 9000, "AnalogueGain": 2.0}
    assert cam.controls[0] == {**locked, "AwbEnable": False, "ColourGains": (1.6, 1.9)}
    assert cam.closed and not cam.started


def test_picamera2_missing_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceOpenError, match="python3-picamera2") as err:
        open_camera("picamera2", Picamera2Options()).open()
    assert "\n" not in str(err.value)
    with pytest.raises(SourceOpenError, match="camera number"):
        open_camera("picamera2", Picamera2Options(device="/dev/video0"))


def test_opencv_options_build_the_opencv_source() -> None:
    source = open_camera("v4l2", OpenCvOptions(device="2", width=640, lock_white_balance=True))
    assert isinstance(source, CameraSource)
    assert (source.device, source.backend, source.width, source.lock_white_balance) == (2, "v4l2", 640, True)


def test_camera_check_asks_for_the_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from car.commands.camera import _config_for

    args = argparse.Namespace(
        device="0", backend="v4l2", width=640, height=480, fps=30.0, lock_exposure_after_s=2.0
    )
    source = _config_for(args).source
    assert (source.lock_exposure_after_s, source.lock_white_balance) == (2.0, True)
    args.backend = "gst"  # reads neither: not asked
    assert _config_for(args).source.lock_exposure_after_s == 0.0
