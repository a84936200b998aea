"""Camera backends by name (`source.backend`): each one an options class and the source that reads them.

This module imports nothing heavy (no OpenCV, no GStreamer): `car.config` derives `source.backend`'s
choices from `CAMERA_BACKENDS` and checks a config against the chosen backend's options class without
paying for a camera library. The source class is imported when a camera is opened.

To add a backend: write its module (a `Lifecycle` source with a `from_options(backend, options)`
classmethod), give it an options dataclass here if none fits, and add one `CameraBackend(...)` line to
`CAMERA_BACKENDS`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vision.errors import VisionError

if TYPE_CHECKING:
    from vision.sources.base import FrameSource


@dataclass(frozen=True, slots=True)
class OpenCvOptions:
    """OpenCV capture: a device index, /dev/videoN, a URL (or a video file, played at its own rate)."""

    device: str = "0"
    width: int = 0
    height: int = 0
    fps: float = 30.0
    lock_exposure_after_s: float = 0.0
    lock_white_balance: bool = False


@dataclass(frozen=True, slots=True)
class GstOptions:
    """GStreamer through PyGObject: `device` is a pipeline ending in `appsink` (size and rate are in it)."""

    device: str = "0"


@dataclass(frozen=True, slots=True)
class Picamera2Options:
    """Raspberry Pi camera through picamera2: `device` is the camera number (0 for the first)."""

    device: str = "0"
    width: int = 0
    height: int = 0
    fps: float = 30.0
    lock_exposure_after_s: float = 0.0
    lock_white_balance: bool = False


CameraOptions = OpenCvOptions | GstOptions | Picamera2Options


@dataclass(frozen=True, slots=True)
class CameraBackend:
    name: str
    help: str
    options: type[Any]  # the options dataclass: which source.* keys this backend reads
    source: str  # "module:Class" of the source; imported when a camera opens
    needs: str = ""  # what must be installed besides the car's runtime


CAMERA_BACKENDS: dict[str, CameraBackend] = {
    b.name: b
    for b in (
        CameraBackend(
            "any",
            "OpenCV picks (V4L2 for a device, FFmpeg for a URL)",
            OpenCvOptions,
            "vision.sources.opencv:CameraSource",
        ),
        CameraBackend(
            "v4l2",
            "OpenCV through V4L2 (USB webcams): MJPEG, one-frame buffer, locks",
            OpenCvOptions,
            "vision.sources.opencv:CameraSource",
        ),
        CameraBackend(
            "gstreamer",
            "OpenCV's own GStreamer (only if OpenCV was built with it; else use gst)",
            OpenCvOptions,
            "vision.sources.opencv:CameraSource",
        ),
        CameraBackend(
            "ffmpeg",
            "OpenCV through FFmpeg (RTSP/HTTP streams)",
            OpenCvOptions,
            "vision.sources.opencv:CameraSource",
        ),
        CameraBackend(
            "gst",
            "GStreamer through PyGObject: a pipeline ending in appsink",
            GstOptions,
            "vision.sources.gst:GstSource",
            needs="pip install '.[camera]' and the GStreamer packages (tools/install-system-packages.sh)",
        ),
        CameraBackend(
            "picamera2",
            "Raspberry Pi camera through picamera2 (recommended on a Pi)",
            Picamera2Options,
            "vision.sources.picam:Picamera2Source",
            needs="Raspberry Pi OS: sudo apt install python3-picamera2; a venv made with "
            "--system-site-packages",
        ),
    )
}


def backend(name: str) -> CameraBackend:
    try:
        return CAMERA_BACKENDS[name]
    except KeyError:
        raise VisionError(f"source.backend={name!r}: choose one of {', '.join(CAMERA_BACKENDS)}") from None


def options_for(name: str, values: Mapping[str, object]) -> Any:
    """The backend's options from the flat `source.*` keys: the keys it reads, nothing else."""
    spec = backend(name)
    own = {f.name for f in dataclasses.fields(spec.options)}
    return spec.options(**{k: v for k, v in values.items() if k in own})


def unread_keys(name: str) -> tuple[str, ...]:
    """The camera keys (of any backend) that this backend does not read: `car.config` refuses them when set,
    e.g. `source.width` with `gst`, whose size is in the pipeline (else they would be silently ignored)."""
    own = {f.name for f in dataclasses.fields(backend(name).options)}
    every = {f.name for b in CAMERA_BACKENDS.values() for f in dataclasses.fields(b.options)}
    return tuple(sorted(every - own))


def open_camera(name: str, options: Any) -> FrameSource:
    """A (not yet opened) camera source of the named backend with these options."""
    spec = backend(name)
    module, _, cls = spec.source.partition(":")
    source_cls = getattr(importlib.import_module(module), cls)
    source: FrameSource = source_cls.from_options(name, options)
    return source
