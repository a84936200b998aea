"""Frame sources: where the car's images come from.

Every source has an explicit lifecycle (`open`/`close`, a context manager; a failed open cleans up and
raises `SourceOpenError` naming the input and the fix) and one way to get a frame, `read(timeout)`, which
returns a `Frame` with a sequence number and a monotonic capture time, or raises:

- `SourceTimeout` (a `TimeoutError`): nothing new within `timeout` seconds. The control loop stops the car.
- `EndOfStream`: a finite source (video file, image folder, drive log) has no more frames.
- `SourceFailure`: the device failed (camera unplugged, decode error); the loop stops the car.

Frames are RGB uint8 as the device delivered them; the loop brings them to the network's input with the one
shared function `vision.preprocess.fit_to_input`. Checking frames (stale, repeated, blank, wrong shape) is
the loop's job, so that every source is judged by the same rules.

Sources: `CameraSource` (OpenCV capture on a thread, newest frame wins), `VideoFileSource`,
`ImageFolderSource` (either dataset layout; the file name's label becomes the frame's ground truth) and
`SimSource` (the simulated world, moved by a speed the caller supplies). The drive-log replay source lives
in `car.replay` (vision never imports car).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import cv2
import numpy as np

from vision.datasets import scan_folder
from vision.errors import VisionError
from vision.frame import Frame, GroundTruth
from vision.imageio import ImageReadError, read_rgb


class SourceTimeout(TimeoutError):
    """No new frame within the read timeout."""


class EndOfStream(Exception):
    """A finite source has delivered its last frame."""


class SourceFailure(RuntimeError):
    """The source broke while running (device gone, undecodable data)."""


class SourceOpenError(VisionError):
    """A source that cannot be opened; the message names it and what to check."""


class FrameSource(Protocol):
    """What the control loop reads frames from."""

    name: str

    def open(self) -> Self: ...

    def close(self) -> None: ...

    def read(self, timeout: float) -> Frame: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class PacingClock(Protocol):
    """The two clock operations a paced source needs (car.timing.Clock satisfies it)."""

    def now(self) -> float: ...

    def sleep_until(self, t: float) -> None: ...


class WallClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


class _Lifecycle:
    """open/close as a context manager; subclasses implement `_open` and `_close`."""

    name: str = "source"

    def open(self) -> Self:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class Pacer:
    """Hands out frame times at a fixed rate (fps > 0) or immediately (fps == 0)."""

    def __init__(self, fps: float, clock: PacingClock) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.clock = clock
        self._next: float | None = None

    def wait(self, timeout: float) -> None:
        now = self.clock.now()
        if self._next is None or self.period == 0.0:
            self._next = now
        due = self._next
        if due - now > timeout:
            self.clock.sleep_until(now + timeout)
            raise SourceTimeout(f"next frame due in {due - now:.3f} s, after the {timeout:.3f} s timeout")
        self.clock.sleep_until(due)
        # A late reader does not get a burst of catch-up frames: the schedule restarts from now.
        self._next = max(due, self.clock.now() - self.period) + self.period


# -- the newest-frame mailbox shared by threaded sources ---------------------------------------------------


class _NewestFrame:
    """A one-frame mailbox between a producer thread and the loop: the newest frame wins.

    A frame the reader never took is overwritten and counted in `skipped`. An ending (end of stream or
    failure) reaches the reader once the frame before it has been taken.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._fresh = False
        self._ending: BaseException | None = None
        self.skipped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._fresh:
                self.skipped += 1
            self._latest, self._fresh = frame, True
            self._cond.notify_all()

    def end(self, exc: BaseException) -> None:
        with self._cond:
            self._ending = exc
            self._cond.notify_all()

    def take(self, timeout: float, what: str) -> Frame:
        """The newest frame not yet taken, waiting up to `timeout` s; raises SourceTimeout after that."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._fresh and self._latest is not None:
                    self._fresh = False
                    return self._latest
                if self._ending is not None:
                    if isinstance(self._ending, EndOfStream | SourceFailure):
                        raise self._ending
                    raise SourceFailure(f"{what}: {type(self._ending).__name__}: {self._ending}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceTimeout(f"{what}: no new frame within {timeout:.3f} s")
                self._cond.wait(remaining)


# -- OpenCV camera -----------------------------------------------------------------------------------------

CAPTURE_BACKENDS: dict[str, int] = {
    "any": cv2.CAP_ANY,
    "v4l2": cv2.CAP_V4L2,
    "gstreamer": cv2.CAP_GSTREAMER,
    "ffmpeg": cv2.CAP_FFMPEG,
}


def _open_capture(device: int | str, api: int) -> cv2.VideoCapture:
    return cv2.VideoCapture(device, api)


def parse_device(device: str) -> int | str:
    """'0' → camera index 0; anything else (path, URL, GStreamer pipeline) as is."""
    text = device.strip()
    return int(text) if text.isdigit() else text


class CameraSource(_Lifecycle):
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
        max_failures: int = 30,
        capture_factory: Callable[[int | str, int], cv2.VideoCapture] | None = None,
    ) -> None:
        if backend not in CAPTURE_BACKENDS:
            raise SourceOpenError(f"camera backend {backend!r}: choose one of {sorted(CAPTURE_BACKENDS)}")
        self.device = parse_device(device)
        self.name = f"camera:{device}"
        self.backend = backend
        self.width, self.height, self.fps = width, height, fps
        self.max_failures = max_failures
        self._factory = capture_factory or _open_capture
        self._cap: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._slot = _NewestFrame()
        self._stopping = False
        self.captured = 0

    @property
    def skipped(self) -> int:
        """Frames captured but replaced by a newer one before the loop took them."""
        return self._slot.skipped

    def _open(self) -> None:
        cap = self._factory(self.device, CAPTURE_BACKENDS[self.backend])
        self._cap = cap
        if not cap.isOpened():
            raise SourceOpenError(
                f"camera {self.device!r}: cannot open it; check source.device (index, /dev/videoN, URL or "
                "GStreamer pipeline), that the camera is plugged in, and that no other program uses it"
            )
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # ask the driver for the newest frame, not a backlog
        self._stopping = False
        self._thread = threading.Thread(target=self._capture_loop, name="camera-capture", daemon=True)
        self._thread.start()

    def _capture_loop(self) -> None:
        assert self._cap is not None
        failures = 0
        seq = 0
        while not self._stopping:
            ok, bgr = self._cap.read()
            t = time.monotonic()
            if not ok or bgr is None:
                failures += 1
                if failures >= self.max_failures:
                    self._slot.end(SourceFailure(f"camera {self.device!r} stopped delivering frames"))
                    return
                time.sleep(0.005)
                continue
            failures = 0
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


# -- any source on its own thread -------------------------------------------------------------------------


class ThreadedSource(_Lifecycle):
    """Reads another source continuously on a thread; `read` returns the newest frame only.

    This is how a camera behaves (its driver captures whether or not anyone reads), and it lets frame
    production (e.g. rendering the simulated world) overlap the loop's inference on another core. Frames
    the loop was too slow to take are counted in `skipped`. The inner source's end of stream or failure is
    passed on to the reader once the frames before it have been taken.
    """

    def __init__(self, inner: FrameSource, *, poll_s: float = 0.25) -> None:
        self.inner = inner
        self.name = inner.name
        self.poll_s = poll_s
        self._slot = _NewestFrame()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def skipped(self) -> int:
        """Frames produced but replaced by a newer one before the loop took them."""
        return self._slot.skipped

    def _open(self) -> None:
        self.inner.open()
        self._stopping = False
        self._thread = threading.Thread(target=self._produce, name=f"frames {self.name}", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        while not self._stopping:
            try:
                frame = self.inner.read(self.poll_s)
            except SourceTimeout:
                continue
            except BaseException as exc:  # end of stream or failure: handed to the reader
                self._slot.end(exc)
                return
            self._slot.put(frame)

    def read(self, timeout: float) -> Frame:
        return self._slot.take(timeout, self.name)

    def _close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.inner.close()


# -- video file --------------------------------------------------------------------------------------------


class VideoFileSource(_Lifecycle):
    """A video file decoded in the caller's thread, paced at `fps` (0: as fast as it decodes)."""

    def __init__(
        self, path: str | Path, *, fps: float = 0.0, loop: bool = False, clock: PacingClock | None = None
    ) -> None:
        self.path = Path(path)
        self.name = f"video:{self.path.name}"
        self.loop = loop
        self._pacer = Pacer(fps, clock or WallClock())
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


# -- image folder ------------------------------------------------------------------------------------------


class ImageFolderSource(_Lifecycle):
    """The images of a dataset folder (`{label}_{id}.jpg`, or `free/` + `blocked/`), in name order.

    The label in the name becomes the frame's ground truth, so a drive over a folder can be scored.
    An unreadable file raises `SourceFailure` (the loop stops the car and goes on to the next file).
    """

    def __init__(
        self, path: str | Path, *, fps: float = 0.0, loop: bool = False, clock: PacingClock | None = None
    ) -> None:
        self.path = Path(path)
        self.name = f"folder:{self.path.name}"
        self.loop = loop
        self._pacer = Pacer(fps, clock or WallClock())
        self._items: tuple[tuple[Path, int], ...] = ()
        self._index = 0
        self._seq = 0

    def _open(self) -> None:
        if not self.path.is_dir():
            raise SourceOpenError(f"{self.path}: no such image folder; check source.path")
        scan = scan_folder(self.path)
        self._items = tuple((item.path, item.label) for item in scan.items)
        self.layout = scan.layout

    def __len__(self) -> int:
        return len(self._items)

    def read(self, timeout: float) -> Frame:
        if self._index >= len(self._items):
            if not self.loop or not self._items:
                raise EndOfStream(f"{self.path}: all {len(self._items)} images delivered")
            self._index = 0
        self._pacer.wait(timeout)
        path, label = self._items[self._index]
        self._index += 1
        seq = self._seq
        self._seq += 1
        try:
            rgb = read_rgb(path)
        except ImageReadError as exc:
            raise SourceFailure(str(exc)) from None
        return Frame(seq, time.monotonic(), rgb, f"{self.name}/{path.name}", GroundTruth(label=label))

    def _close(self) -> None:
        self._items = ()


# -- simulated world ---------------------------------------------------------------------------------------


class SimWorld(Protocol):
    """What SimSource needs of `vision.sim.World`."""

    def step(self, speed_mps: float, dt: float) -> None: ...

    def render(self) -> tuple[np.ndarray, GroundTruth]: ...


class SimSource(_Lifecycle):
    """The simulated forward camera: each read moves the world by the time passed, then renders it.

    `speed_mps()` is asked for the car's speed at every frame (in `car drive` it is the virtual
    microcontroller's motor output times the world's top speed), so the loop is closed: a STOP the firmware
    obeys stops the car. `fps` paces frames on `clock` (0: as fast as they render). With a simulated
    clock (`car sim eval`) no real time passes at all.
    """

    def __init__(
        self,
        world: SimWorld,
        speed_mps: Callable[[], float],
        *,
        fps: float = 30.0,
        clock: PacingClock | None = None,
        name: str = "sim",
    ) -> None:
        self.world = world
        self.speed_mps = speed_mps
        self.name = name
        self.clock = clock or WallClock()
        self._pacer = Pacer(fps, self.clock)
        self._t_last: float | None = None
        self._seq = 0
        self.distance_m = 0.0

    def _open(self) -> None:
        self._t_last = None
        self._seq = 0

    def read(self, timeout: float) -> Frame:
        self._pacer.wait(timeout)
        now = self.clock.now()
        if self._t_last is not None:
            dt = now - self._t_last
            speed = self.speed_mps()
            self.world.step(speed, dt)
            self.distance_m += speed * dt
        self._t_last = now
        rgb, truth = self.world.render()
        frame = Frame(self._seq, self.clock.now(), rgb, self.name, truth)
        self._seq += 1
        return frame

    def _close(self) -> None:
        pass
