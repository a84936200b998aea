"""A video file decoded in the caller's thread (`source.kind: video`)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from vision.clock import Clock, MonotonicClock
from vision.frame import Frame
from vision.sources.base import (
    EndOfStream,
    Lifecycle,
    Pacer,
    SourceFailure,
    SourceOpenError,
)


class VideoFileSource(Lifecycle):
    """A video file decoded in the caller's thread, paced at `fps` (0: as fast as it decodes)."""

    def __init__(
        self, path: str | Path, *, fps: float = 0.0, loop: bool = False, clock: Clock | None = None
    ) -> None:
        self.path = Path(path)
        self.name = f"video:{self.path.name}"
        self.loop = loop
        self._pacer = Pacer(fps, clock or MonotonicClock())
        self._cap: cv2.VideoCapture | None = None
        self._seq = 0

    def _open(self) -> None:
        if not self.path.is_file():
            raise SourceOpenError(f"{self.path}: no such video file; check source.path")
        cap = cv2.VideoCapture(str(self.path))
        self._cap = cap
        if not cap.isOpened():
            raise SourceOpenError(
                f"{self.path}: OpenCV cannot decode this video; convert it to MP4 (H.264/mp4v)"
            )

    def read(self, timeout: float) -> Frame:
        if self._cap is None:
            raise SourceFailure(f"{self.path}: the video source is not open")
        self._pacer.wait(timeout)
        ok, bgr = self._cap.read()
        if not ok and self.loop and self._seq > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise EndOfStream(f"{self.path}: end of video after {self._seq} frames")
        frame = Frame(self._seq, time.monotonic(), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.name)
        self._seq += 1
        return frame

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
