"""OpenCV capture (`source.backend`: any, v4l2, gstreamer, ffmpeg): a camera on a thread, newest frame wins.

For a USB camera (V4L2) it asks for what matters on a moving car: MJPEG where the device offers it (30 fps
at sizes where raw YUYV manages less), a one-frame driver buffer (no queued, stale frames), and after
opening it reads back the size, rate and format it got; a mismatch with what was asked is reported in
`info()["warnings"]`, never silent. `lock_exposure_after_s` / `lock_white_balance` switch auto exposure /
auto white balance off once the camera has settled, keeping the values it settled on; a driver that refuses
is reported the same way.

A video file given as the device plays at its own frame rate and ends with `EndOfStream` (for pacing,
looping and speed control use `source.kind: video`); a file whose rate OpenCV cannot read is refused with
that pointer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2

from vision.clock import MonotonicClock
from vision.frame import Frame
from vision.sources.base import (
    EndOfStream,
    Lifecycle,
    NewestFrame,
    Pacer,
    SourceFailure,
    SourceOpenError,
)
from vision.sources.v4l2 import MJPEG_CODES, offers_mjpeg

CAPTURE_BACKENDS: dict[str, int] = {
    "any": cv2.CAP_ANY,
    "v4l2": cv2.CAP_V4L2,
    "gstreamer": cv2.CAP_GSTREAMER,
    "ffmpeg": cv2.CAP_FFMPEG,
}
V4L2_MANUAL_EXPOSURE = 1  # V4L2_EXPOSURE_MANUAL (OpenCV's V4L2 backend passes the value through)


def _open_capture(device: int | str, api: int) -> cv2.VideoCapture:
    return cv2.VideoCapture(device, api)


def parse_device(device: str) -> int | str:
    """'0' → camera index 0; anything else (path, URL, GStreamer pipeline) as is."""
    text = device.strip()
    return int(text) if text.isdigit() else text


def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False


def _looks_like_pipeline(device: int | str) -> bool:
    return isinstance(device, str) and "!" in device and "appsink" in device


def _fourcc_text(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\0 ") if code > 0 else ""


class CameraSource(Lifecycle):
    """An OpenCV capture read continuously on a thread; `read` returns the newest frame only.

    Every captured frame gets the next sequence number and the monotonic time `VideoCapture.read` returned
    it. Frames the loop was too slow to take are counted in `skipped`, not queued: the car acts on the
    newest image. When the device stops delivering (`read` fails `max_failures` times in a row) the thread
    ends and `read` raises `SourceFailure`.
    """

    def __init__(
        self,
        device: str,
        *,
        backend: str = "any",
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        lock_exposure_after_s: float = 0.0,
        lock_white_balance: bool = False,
        max_failures: int = 30,
        capture_factory: Callable[[int | str, int], cv2.VideoCapture] | None = None,
    ) -> None:
        if backend not in CAPTURE_BACKENDS:
            raise SourceOpenError(f"camera backend {backend!r}: choose one of {sorted(CAPTURE_BACKENDS)}")
        self.device = parse_device(device)
        self.name = f"camera:{device}"
        self.backend = backend
        self.width, self.height, self.fps = width, height, fps
        self.lock_exposure_after_s = lock_exposure_after_s
        self.lock_white_balance = lock_white_balance
        self.max_failures = max_failures
        self._factory = capture_factory or _open_capture
        self._cap: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._slot = NewestFrame()
        self._stopping = False
        self._file_fps = 0.0
        self._info: dict[str, Any] = {}
        self.captured = 0

    @classmethod
    def from_options(cls, backend: str, options: Any) -> CameraSource:
        return cls(
            options.device,
            backend=backend,
            width=options.width,
            height=options.height,
            fps=options.fps,
            lock_exposure_after_s=options.lock_exposure_after_s,
            lock_white_balance=options.lock_white_balance,
        )

    @property
    def skipped(self) -> int:
        """Frames captured but replaced by a newer one before the loop took them."""
        return self._slot.skipped

    @property
    def is_file(self) -> bool:
        return isinstance(self.device, str) and Path(self.device).is_file()

    def info(self) -> dict[str, object]:
        return dict(self._info)

    def _refuse_without_gstreamer(self) -> None:
        if (self.backend == "gstreamer" or _looks_like_pipeline(self.device)) and not opencv_has_gstreamer():
            raise SourceOpenError(
                f"camera {self.device!r}: this OpenCV is built without GStreamer (getBuildInformation: "
                "GStreamer NO); use source.backend: gst (PyGObject: pip install '.[camera]')"
            )

    def _open(self) -> None:
        if self._factory is _open_capture:
            self._refuse_without_gstreamer()
        mjpeg = not self.is_file and self.backend in ("any", "v4l2") and offers_mjpeg(self.device)
        cap = self._factory(self.device, CAPTURE_BACKENDS[self.backend])
        self._cap = cap
        if not cap.isOpened():
            raise SourceOpenError(
                f"camera {self.device!r}: cannot open it; check source.device (index, /dev/videoN, URL or "
                "video file), that the camera is plugged in, and that no other program uses it"
            )
        if self.is_file:
            self._open_file(cap)
        else:
            self._configure(cap, mjpeg)
        self._stopping = False
        self._thread = threading.Thread(target=self._capture_loop, name="camera-capture", daemon=True)
        self._thread.start()

    def _open_file(self, cap: cv2.VideoCapture) -> None:
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0.0 < rate < 1000.0:
            raise SourceOpenError(
                f"camera {self.device!r} is a video file whose frame rate OpenCV cannot read; use "
                "source.kind: video with source.path and source.fps instead"
            )
        self._file_fps = rate
        self._info = {"backend": self.backend, "file": True, "fps": rate, **self._negotiated(cap)}

    def _configure(self, cap: cv2.VideoCapture, mjpeg: bool) -> None:
        """Ask for MJPEG, size and rate, and a one-frame buffer; read back what the driver gave."""
        if mjpeg:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        buffer_ok = bool(cap.set(cv2.CAP_PROP_BUFFERSIZE, 1))  # the newest frame, not a backlog
        got = self._negotiated(cap)
        warnings = [
            f"asked {what} {want}, the driver gives {got[what]}"
            for what, want in (("width", self.width), ("height", self.height), ("fps", self.fps))
            if want and got[what] and abs(float(got[what]) - float(want)) > 0.5  # type: ignore[arg-type]
        ]
        if mjpeg and got["format"] not in MJPEG_CODES:
            warnings.append(f"asked MJPEG, the driver gives {got['format'] or 'an unknown format'}")
        if not buffer_ok:
            warnings.append("the driver refuses a one-frame buffer (frames may queue: watch stale_frame)")
        self._info = {"backend": self.backend, "mjpeg_requested": mjpeg, **got, "warnings": warnings}

    @staticmethod
    def _negotiated(cap: cv2.VideoCapture) -> dict[str, object]:
        return {
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
            "fps": round(float(cap.get(cv2.CAP_PROP_FPS) or 0.0), 3),
            "format": _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC) or 0.0),
        }

    def _lock_controls(self, cap: cv2.VideoCapture) -> None:
        """Auto exposure / white balance off, keeping the values the camera settled on (on the capture thread,
        which owns the device). What the driver refused goes into `info()["warnings"]`."""
        controls: dict[str, object] = {}
        warnings: list[str] = []
        if self.lock_exposure_after_s > 0:
            exposure = cap.get(cv2.CAP_PROP_EXPOSURE)
            ok = cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, V4L2_MANUAL_EXPOSURE) and cap.set(
                cv2.CAP_PROP_EXPOSURE, exposure
            )
            controls["exposure"] = exposure if ok else None
            if not ok:
                warnings.append("the driver does not allow locking the exposure (auto exposure stays on)")
        if self.lock_white_balance:
            temperature = cap.get(cv2.CAP_PROP_WB_TEMPERATURE)
            ok = cap.set(cv2.CAP_PROP_AUTO_WB, 0) and cap.set(cv2.CAP_PROP_WB_TEMPERATURE, temperature)
            controls["white_balance_k"] = temperature if ok else None
            if not ok:
                warnings.append("the driver does not allow locking the white balance (auto stays on)")
        old = self._info.get("warnings", [])
        self._info = {**self._info, "locked": controls, "warnings": [*old, *warnings]}

    def _capture_loop(self) -> None:
        assert self._cap is not None
        failures = 0
        seq = 0
        pacer = Pacer(self._file_fps, MonotonicClock()) if self._file_fps else None
        lock_due = self.lock_exposure_after_s if self.lock_exposure_after_s > 0 else 0.0
        t_open = time.monotonic()
        locked = not (lock_due or self.lock_white_balance)
        while not self._stopping:
            if pacer is not None:
                pacer.wait(1.0)
            ok, bgr = self._cap.read()
            t = time.monotonic()
            if not ok or bgr is None:
                if pacer is not None:
                    self._slot.end(EndOfStream(f"{self.device}: end of video file after {seq} frames"))
                    return
                failures += 1
                if failures >= self.max_failures:
                    self._slot.end(SourceFailure(f"camera {self.device!r} stopped delivering frames"))
                    return
                time.sleep(0.005)
                continue
            failures = 0
            if not locked and t - t_open >= lock_due:
                self._lock_controls(self._cap)
                locked = True
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 and bgr.shape[2] == 3 else bgr
            self._slot.put(Frame(seq, t, rgb, self.name))
            self.captured += 1
            seq += 1

    def read(self, timeout: float) -> Frame:
        if self._thread is None:
            raise SourceFailure(f"camera {self.device!r} is not open")
        return self._slot.take(timeout, f"camera {self.device!r}")

    def _close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._cap is not None:
            self._cap.release()
            self._cap = None
