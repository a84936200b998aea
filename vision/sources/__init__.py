"""Frame sources: where the car's images come from (one module per source, camera backends in a registry).

Every source has an explicit lifecycle (`open`/`close`, a context manager; a failed open cleans up and
raises `SourceOpenError` naming the input and the fix) and one way to get a frame, `read(timeout)`, which
returns a `Frame` with a sequence number and a monotonic capture time, or raises `SourceTimeout` (nothing
new in time), `EndOfStream` (a finite source ran out) or `SourceFailure` (the device broke). See `base`.

Frames are RGB uint8 as the device delivered them; the loop brings them to the network's input with the one
shared function `vision.preprocess.fit_to_input`. Checking frames (stale, repeated, blank, wrong shape) is
the loop's job, so that every source is judged by the same rules.

Modules: `base` (errors, protocol, lifecycle, pacing, the newest-frame mailbox, `ThreadedSource`),
`registry` (the camera backends by name: light, imports nothing heavy), `opencv` (OpenCV capture: any, v4l2,
gstreamer, ffmpeg), `gst` (GStreamer through PyGObject), `picam` (Raspberry Pi camera through picamera2),
`video`, `folder`, `sim`. The drive-log replay source lives in `car.replay` (vision never imports car).

Names are imported from their module on first use, so `vision.sources.registry` (which `car.config` reads
for its choices) costs no OpenCV import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vision.sources.base import (
        EndOfStream,
        FrameSource,
        Lifecycle,
        NewestFrame,
        Pacer,
        SourceFailure,
        SourceOpenError,
        SourceTimeout,
        ThreadedSource,
        _Lifecycle,
        _NewestFrame,
    )
    from vision.sources.folder import ImageFolderSource
    from vision.sources.opencv import CAPTURE_BACKENDS, CameraSource, parse_device
    from vision.sources.registry import CAMERA_BACKENDS, CameraBackend, CameraOptions, open_camera
    from vision.sources.sim import SimSource, SimWorld
    from vision.sources.video import VideoFileSource

_WHERE: dict[str, str] = {
    **dict.fromkeys(
        (
            "EndOfStream",
            "FrameSource",
            "Lifecycle",
            "NewestFrame",
            "Pacer",
            "SourceFailure",
            "SourceOpenError",
            "SourceTimeout",
            "ThreadedSource",
            "_Lifecycle",
            "_NewestFrame",
        ),
        "base",
    ),
    "ImageFolderSource": "folder",
    "CAPTURE_BACKENDS": "opencv",
    "CameraSource": "opencv",
    "parse_device": "opencv",
    "CAMERA_BACKENDS": "registry",
    "CameraBackend": "registry",
    "CameraOptions": "registry",
    "open_camera": "registry",
    "SimSource": "sim",
    "SimWorld": "sim",
    "VideoFileSource": "video",
}

__all__ = [
    "CAMERA_BACKENDS",
    "CAPTURE_BACKENDS",
    "CameraBackend",
    "CameraOptions",
    "CameraSource",
    "EndOfStream",
    "FrameSource",
    "ImageFolderSource",
    "Lifecycle",
    "NewestFrame",
    "Pacer",
    "SimSource",
    "SimWorld",
    "SourceFailure",
    "SourceOpenError",
    "SourceTimeout",
    "ThreadedSource",
    "VideoFileSource",
    "_Lifecycle",
    "_NewestFrame",
    "open_camera",
    "parse_device",
]


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'vision.sources' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vision.sources.{module}"), name)
    globals()[name] = value
    return value
