"""What every frame source shares: the errors, the protocol, the lifecycle, pacing, the newest-frame mailbox.

Every source has an explicit lifecycle (`open`/`close`, a context manager; a failed open cleans up and
raises `SourceOpenError` naming the input and the fix) and one way to get a frame, `read(timeout)`, which
returns a `Frame` with a sequence number and a monotonic capture time, or raises:

- `SourceTimeout` (a `TimeoutError`): nothing new within `timeout` seconds. The control loop stops the car.
- `EndOfStream`: a finite source (video file, image folder, drive log) has no more frames.
- `SourceFailure`: the device failed (camera unplugged, decode error); the loop stops the car.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Protocol, Self

from vision.clock import Clock
from vision.errors import VisionError
from vision.frame import Frame


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


class Lifecycle:
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

    def info(self) -> dict[str, object]:
        """What the source negotiated and set (format, size, rate, controls, warnings), once open; for the
        drive log's run row and `car camera check`. Empty for sources with nothing to report."""
        return {}

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class Pacer:
    """Hands out frame times at a fixed rate (fps > 0) or immediately (fps == 0)."""

    def __init__(self, fps: float, clock: Clock) -> None:
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


class NewestFrame:
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


_Lifecycle = Lifecycle
_NewestFrame = NewestFrame


# -- any source on its own thread -------------------------------------------------------------------------


class ThreadedSource(Lifecycle):
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
        self._slot = NewestFrame()
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

    def info(self) -> dict[str, object]:
        return source_info(self.inner)

    def _close(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.inner.close()


def source_info(source: object) -> dict[str, object]:
    """`source.info()` for sources that have it (every `Lifecycle`), else nothing."""
    info = getattr(source, "info", None)
    return dict(info()) if callable(info) else {}
