"""GStreamer through PyGObject (`source.backend: gst`): any pipeline ending in `appsink`, read on a thread.

This does not depend on how OpenCV was built (the pip OpenCV has no GStreamer). The pipeline string is
the user's (`source.device`); its `appsink` is set to hand over RGB, to keep one buffer and drop older ones,
and is pulled on a thread into the same newest-frame mailbox as the other cameras. A frame's capture time
is its buffer's PTS, taken to running time by the sample's segment, plus the pipeline's base time, mapped
from the pipeline clock onto `time.monotonic()`; frames without a PTS get the time they were pulled.

Errors are one line: the pipeline does not parse (a missing element is named with the Debian package that
provides it), an element fails to start (named), the pipeline errors while running (`SourceFailure`, the
element named: the loop logs `source_error`), it stalls (`SourceTimeout`: `no_frame`), or ends (EOS:
`EndOfStream`). PyGObject comes with the `camera` extra; GStreamer itself is Debian packages.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from vision.frame import Frame
from vision.sources.base import EndOfStream, Lifecycle, NewestFrame, SourceFailure, SourceOpenError

DEBIAN_PACKAGES = (
    "gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gir1.2-gstreamer-1.0 "
    "gir1.2-gst-plugins-base-1.0"
)
INSTALL_HINT = (
    f"pip install '.[camera]' (PyGObject; building it needs libgirepository1.0-dev libcairo2-dev pkg-config "
    f"python3-dev) and apt-get install {DEBIAN_PACKAGES}"
)
# Which package provides an element (Debian / Raspberry Pi OS; JetPack for NVIDIA's).
ELEMENT_PACKAGES: dict[str, str] = {
    **dict.fromkeys(
        (
            "appsink",
            "videoconvert",
            "videoscale",
            "videorate",
            "videotestsrc",
            "decodebin",
            "uridecodebin",
            "playbin",
            "capsfilter",
            "queue",
            "identity",
            "filesrc",
            "tee",
            "valve",
            "fakesink",
        ),
        "gstreamer1.0-plugins-base",
    ),
    **dict.fromkeys(
        (
            "v4l2src",
            "jpegdec",
            "rtspsrc",
            "rtph264depay",
            "rtph265depay",
            "rtpjpegdepay",
            "souphttpsrc",
            "udpsrc",
            "qtdemux",
            "matroskademux",
            "avidemux",
            "v4l2h264dec",
            "videoflip",
            "jpegparse",
        ),
        "gstreamer1.0-plugins-good",
    ),
    **dict.fromkeys(("h264parse", "h265parse", "openh264dec", "rtspclientsink"), "gstreamer1.0-plugins-bad"),
    **dict.fromkeys(("avdec_h264", "avdec_h265", "avdec_mjpeg"), "gstreamer1.0-libav"),
    "libcamerasrc": "gstreamer1.0-libcamera (Raspberry Pi OS)",
    **dict.fromkeys(
        ("nvarguscamerasrc", "nvvidconv", "nvv4l2decoder", "nvjpegdec"),
        "NVIDIA JetPack's nvidia-l4t-gstreamer",
    ),
}
NS = 1_000_000_000


def _keep_cxx_exceptions_working() -> None:
    """Put libgcc_s in the global symbol scope before GStreamer loads libunwind.

    libgstreamer-1.0 (Debian) links libunwind, which also exports `_Unwind_RaiseException`; once it is
    global, C++ libraries loaded earlier with their own libgcc_s kept local (torch, imported first in a
    test process or a tool) bind their first throw to libunwind's and abort ("terminate called after
    throwing an instance of 'pybind11::stop_iteration'"). With libgcc_s global first, they keep theirs.
    """
    with contextlib.suppress(OSError):
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)


def _gst() -> Any:
    """The Gst module, initialised; a one-line error naming the extra and the packages when it is missing."""
    _keep_cxx_exceptions_working()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        from gi.repository import Gst, GstApp  # GstApp gives appsink its pull methods

        del GstApp
    except (ImportError, ValueError) as exc:
        raise SourceOpenError(
            f"source.backend=gst needs GStreamer's Python bindings ({exc}): {INSTALL_HINT}"
        ) from None
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst


def missing_element_message(pipeline: str, error: str) -> str:
    match = re.search(r'no element "([^"]+)"', error)
    if match is None:
        return f"gst pipeline {pipeline!r} does not parse: {error}; check the gst-launch-1.0 syntax"
    name = match.group(1)
    package = ELEMENT_PACKAGES.get(name, "the package that provides it (gst-inspect-1.0 lists what is here)")
    return f"gst pipeline: no element {name!r} on this computer; install {package}"


class GstSource(Lifecycle):
    """A GStreamer pipeline ending in `appsink`, pulled on a thread; `read` returns the newest frame."""

    def __init__(self, pipeline: str, *, poll_s: float = 0.05, start_timeout_s: float = 10.0) -> None:
        self.description = pipeline.strip()
        self.name = f"gst:{self.description.split('!')[0].strip()}"
        self.poll_s = poll_s
        self.start_timeout_s = start_timeout_s
        self.pipeline: Any = None
        self._sink: Any = None
        self._thread: threading.Thread | None = None
        self._slot = NewestFrame()
        self._stopping = False
        self._info: dict[str, object] = {"backend": "gst", "pipeline": self.description}
        self.captured = 0
        self.upstream_dropped = 0  # frames the pipeline numbered but that never reached the reader thread
        self._offsets: deque[float] = deque(maxlen=64)

    @classmethod
    def from_options(cls, backend: str, options: Any) -> GstSource:
        return cls(options.device)

    @property
    def skipped(self) -> int:
        return self._slot.skipped

    def info(self) -> dict[str, object]:
        return dict(self._info)

    def _open(self) -> None:
        Gst = _gst()
        from gi.repository import GLib

        if "appsink" not in self.description:
            raise SourceOpenError(f"gst pipeline {self.description!r}: it must end in appsink")
        try:
            self.pipeline = Gst.parse_launch(self.description)
        except GLib.Error as exc:
            raise SourceOpenError(missing_element_message(self.description, exc.message)) from None
        self._sink = self._find_appsink(Gst)
        self._start(Gst)
        self._stopping = False
        self._thread = threading.Thread(target=self._pull_loop, args=(Gst,), name="gst-pull", daemon=True)
        self._thread.start()

    def _find_appsink(self, Gst: Any) -> Any:
        found = None
        iterator = self.pipeline.iterate_sinks() if isinstance(self.pipeline, Gst.Bin) else None
        while iterator is not None:
            ok, element = iterator.next()
            if ok != Gst.IteratorResult.OK:
                break
            if element.get_factory() is not None and element.get_factory().get_name() == "appsink":
                found = element
        if found is None and self.pipeline.get_factory() is not None:
            found = self.pipeline if self.pipeline.get_factory().get_name() == "appsink" else None
        if found is None:
            raise SourceOpenError(f"gst pipeline {self.description!r}: it must end in appsink")
        if found.get_property("caps") is None:  # RGB unless the user asked for a format
            found.set_property("caps", Gst.Caps.from_string("video/x-raw,format=RGB"))
        found.set_property("max-buffers", 1)
        found.set_property("drop", True)
        found.set_property("emit-signals", False)
        return found

    def _start(self, Gst: Any) -> None:
        live = self.pipeline.set_state(Gst.State.PAUSED) == Gst.StateChangeReturn.NO_PREROLL
        self.pipeline.set_state(Gst.State.PLAYING)
        result, _state, _pending = self.pipeline.get_state(int(self.start_timeout_s * NS))
        failed = result == Gst.StateChangeReturn.FAILURE
        error = self._bus_error(Gst, 1.0 if failed else 0.0)
        if failed or error is not None:
            what = (
                error
                or "no element says why (formats that do not negotiate? end with videoconvert ! appsink)"
            )
            raise SourceOpenError(f"gst pipeline failed to start: {what}")
        if live and "sync=" not in self.description:
            # a live source (camera, RTSP): hand frames over as they come, not at PTS + pipeline latency;
            # a file or test source (not live) keeps sync and so plays at its own rate
            self._sink.set_property("sync", False)
            self._info["sync"] = False
        if result == Gst.StateChangeReturn.ASYNC:
            raise SourceOpenError(
                f"gst pipeline not PLAYING after {self.start_timeout_s:.0f} s (is the camera there?)"
            )

    def _bus_error(self, Gst: Any, wait_s: float = 0.0) -> str | None:
        """The first error on the bus (waiting up to `wait_s`) as 'element NAME: message', else None."""
        bus = self.pipeline.get_bus()
        message = bus.timed_pop_filtered(int(wait_s * NS), Gst.MessageType.ERROR)
        if message is None:
            return None
        err, _debug = message.parse_error()
        source = message.src.get_name() if message.src is not None else "?"
        hint = (
            " (formats that do not negotiate? end with videoconvert ! appsink)"
            if "data stream" in err.message
            else ""
        )
        return f"element {source}: {err.message}{hint}"

    def _capture_time(self, Gst: Any, sample: Any, buffer: Any) -> float:
        now = time.monotonic()
        clock = self.pipeline.get_clock()
        if buffer.pts == Gst.CLOCK_TIME_NONE or clock is None:
            return now
        running = sample.get_segment().to_running_time(Gst.Format.TIME, buffer.pts)
        if running == Gst.CLOCK_TIME_NONE:
            return now
        # pipeline clock -> monotonic: the smallest recent (monotonic - clock) difference, so that a thread
        # pre-empted between the two readings does not move a frame's time
        self._offsets.append(time.monotonic() - clock.get_time() / NS)
        t: float = (self.pipeline.get_base_time() + running) / NS + min(self._offsets)
        return min(t, now)

    def _to_rgb(self, Gst: Any, sample: Any, buffer: Any) -> np.ndarray:
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        fmt = structure.get_value("format")
        if fmt not in ("RGB", "BGR"):
            raise SourceFailure(f"gst appsink gives {fmt}; end the pipeline with videoconvert ! appsink")
        ok, mapped = buffer.map(Gst.MapFlags.READ)
        if not ok:
            raise SourceFailure("gst: cannot read a buffer")
        try:
            data = np.frombuffer(mapped.data, np.uint8)
            stride = data.size // height  # rows are padded to 4 bytes
            rgb = data[: stride * height].reshape(height, stride)[:, : width * 3].reshape(height, width, 3)
            rgb = rgb[:, :, ::-1] if fmt == "BGR" else rgb
            out: np.ndarray = np.ascontiguousarray(rgb)
        finally:
            buffer.unmap(mapped)
        return out

    def _note_caps(self, sample: Any) -> None:
        structure = sample.get_caps().get_structure(0)
        ok, num, den = structure.get_fraction("framerate")
        self._info.update(
            caps=sample.get_caps().to_string(),
            width=structure.get_value("width"),
            height=structure.get_value("height"),
            format=structure.get_value("format"),
            fps=round(num / den, 3) if ok and den else 0.0,
        )

    def _pull_loop(self, Gst: Any) -> None:
        try:
            self._pull(Gst)
        except BaseException as exc:  # anything unexpected reaches the reader as a failure
            self._slot.end(exc)

    def _pull(self, Gst: Any) -> None:
        seq = 0
        last_offset = -1  # sources that number their buffers (videotestsrc, v4l2src) start at 0
        while not self._stopping:
            sample = self._sink.try_pull_sample(int(self.poll_s * NS))
            if sample is None:
                if self._ended(Gst, seq):
                    return
                continue
            buffer = sample.get_buffer()
            t = self._capture_time(Gst, sample, buffer)
            if seq == 0:
                self._note_caps(sample)
            if buffer.offset != Gst.BUFFER_OFFSET_NONE:
                first_is_far = last_offset < 0 and buffer.offset > 1000  # numbered from elsewhere: no gap
                if buffer.offset > last_offset + 1 and not first_is_far:
                    self.upstream_dropped += buffer.offset - last_offset - 1
                last_offset = buffer.offset
            try:
                rgb = self._to_rgb(Gst, sample, buffer)
            except SourceFailure as exc:
                self._slot.end(exc)
                return
            self._slot.put(Frame(seq, t, rgb, self.name))
            self.captured += 1
            seq += 1

    def _ended(self, Gst: Any, seq: int) -> bool:
        """An error on the bus or the end of the stream ends the thread (the reader gets it)."""
        error = self._bus_error(Gst)
        if error is not None:
            self._slot.end(SourceFailure(f"gst pipeline error: {error}"))
            return True
        if self._sink.is_eos():
            self._slot.end(EndOfStream(f"gst pipeline: end of stream after {seq} frames"))
            return True
        return False

    def read(self, timeout: float) -> Frame:
        if self._thread is None:
            raise SourceFailure("the gst source is not open")
        return self._slot.take(timeout, self.name)

    def _close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self.pipeline is not None:
            Gst = _gst()
            self.pipeline.set_state(Gst.State.NULL)
            self.pipeline = None
