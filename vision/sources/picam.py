"""Raspberry Pi camera through picamera2 (`source.backend: picamera2`): the recommended path on a Pi.

Written against picamera2's documented API: `Picamera2(camera_num)`, `create_video_configuration(main=
{"size": ..., "format": "RGB888"}, controls={"FrameRate": ...})`, `configure`, `start`, `capture_request`
(its `make_array("main")` and `get_metadata()`), `set_controls`, `stop`, `close`. picamera2's "RGB888" is
stored B, G, R in memory, so frames are flipped to RGB. The capture time is the request's `SensorTimestamp`
(nanoseconds on the kernel's monotonic clock, when the first row was exposed) when it is plausible, else
the time the request arrived. `lock_exposure_after_s` / `lock_white_balance` set `AeEnable` / `AwbEnable`
off and pin `ExposureTime` + `AnalogueGain` / `ColourGains` to the values of the newest frame.

picamera2 is not on PyPI in a usable form off a Pi: on Raspberry Pi OS install `python3-picamera2` with apt
and make the venv with `--system-site-packages`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from vision.frame import Frame
from vision.sources.base import Lifecycle, NewestFrame, SourceFailure, SourceOpenError

INSTALL_HINT = (
    "source.backend=picamera2 needs picamera2 (Raspberry Pi OS: sudo apt install -y python3-picamera2, "
    "and a venv made with python3 -m venv --system-site-packages); elsewhere use source.backend: gst "
    "with libcamerasrc"
)
NS = 1_000_000_000


class Picamera2Source(Lifecycle):
    """A Raspberry Pi camera (libcamera) captured on a thread; `read` returns the newest frame."""

    def __init__(
        self,
        camera: int = 0,
        *,
        width: int = 0,
        height: int = 0,
        fps: float = 30.0,
        lock_exposure_after_s: float = 0.0,
        lock_white_balance: bool = False,
        poll_s: float = 0.25,
    ) -> None:
        self.camera = camera
        self.name = f"picamera2:{camera}"
        self.size = (width or 640, height or 480)
        self.fps = fps
        self.lock_exposure_after_s = lock_exposure_after_s
        self.lock_white_balance = lock_white_balance
        self.poll_s = poll_s
        self.picam: Any = None
        self._thread: threading.Thread | None = None
        self._slot = NewestFrame()
        self._stopping = False
        self._info: dict[str, object] = {"backend": "picamera2"}
        self.captured = 0

    @classmethod
    def from_options(cls, backend: str, options: Any) -> Picamera2Source:
        device = str(options.device).strip()
        if not device.isdigit():
            raise SourceOpenError(f"source.device={device!r}: picamera2 wants the camera number (0, 1, ...)")
        return cls(
            int(device),
            width=options.width,
            height=options.height,
            fps=options.fps,
            lock_exposure_after_s=options.lock_exposure_after_s,
            lock_white_balance=options.lock_white_balance,
        )

    @property
    def skipped(self) -> int:
        return self._slot.skipped

    def info(self) -> dict[str, object]:
        return dict(self._info)

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceOpenError(INSTALL_HINT) from None
        try:
            self.picam = Picamera2(self.camera)
            controls = {"FrameRate": self.fps} if self.fps else {}
            config = self.picam.create_video_configuration(
                main={"size": self.size, "format": "RGB888"}, controls=controls
            )
            self.picam.configure(config)
            self.picam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceOpenError(
                f"picamera2 camera {self.camera}: cannot start it ({exc}); check the ribbon cable and "
                "`rpicam-hello --list-cameras`"
            ) from None
        main = config.get("main", {}) if isinstance(config, dict) else {}
        self._info.update(
            camera=self.camera, size=list(main.get("size", self.size)), format="RGB888", fps=self.fps
        )
        self._stopping = False
        self._thread = threading.Thread(target=self._capture_loop, name="picamera2", daemon=True)
        self._thread.start()

    def _capture_time(self, metadata: dict[str, Any], arrived: float) -> float:
        stamp = metadata.get("SensorTimestamp")
        if not isinstance(stamp, int):
            return arrived
        t = stamp / NS
        return t if arrived - 1.0 <= t <= arrived else arrived  # another clock: use the arrival time

    def _lock(self, metadata: dict[str, Any], exposure: bool) -> None:
        """Auto exposure and/or white balance off, pinned to the newest frame's values."""
        controls: dict[str, object] = {}
        if exposure and "ExposureTime" in metadata:
            controls.update(
                AeEnable=False,
                ExposureTime=int(metadata["ExposureTime"]),
                AnalogueGain=float(metadata.get("AnalogueGain", 1.0)),
            )
        if self.lock_white_balance and "ColourGains" in metadata:
            red, blue = metadata["ColourGains"]
            controls.update(AwbEnable=False, ColourGains=(float(red), float(blue)))
        warnings = []
        if exposure and "AeEnable" not in controls:
            warnings.append("no ExposureTime in the metadata: exposure not locked")
        if self.lock_white_balance and "AwbEnable" not in controls:
            warnings.append("no ColourGains in the metadata: white balance not locked")
        if controls:
            self.picam.set_controls(controls)
        self._info.update(locked=controls, warnings=warnings)

    def _capture_loop(self) -> None:
        try:
            self._capture()
        except BaseException as exc:  # the reader gets it as a failure (the loop logs source_error)
            self._slot.end(exc if isinstance(exc, SourceFailure) else SourceFailure(f"picamera2: {exc}"))

    def _capture(self) -> None:
        seq = 0
        t_open = time.monotonic()
        lock_pending = self.lock_exposure_after_s > 0 or self.lock_white_balance
        while not self._stopping:
            try:
                request = self.picam.capture_request(wait=self.poll_s)
            except TimeoutError:
                continue
            arrived = time.monotonic()
            try:
                bgr = request.make_array("main")
                metadata = dict(request.get_metadata())
            finally:
                request.release()
            rgb = np.ascontiguousarray(bgr[:, :, 2::-1])  # RGB888 is B, G, R in memory (4th byte: padding)
            if lock_pending and arrived - t_open >= self.lock_exposure_after_s:
                self._lock(metadata, exposure=self.lock_exposure_after_s > 0)
                lock_pending = False
            self._slot.put(Frame(seq, self._capture_time(metadata, arrived), rgb, self.name))
            self.captured += 1
            seq += 1

    def read(self, timeout: float) -> Frame:
        if self._thread is None:
            raise SourceFailure("the picamera2 source is not open")
        return self._slot.take(timeout, self.name)

    def _close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.picam is not None:
            self.picam.stop()
            self.picam.close()
            self.picam = None
