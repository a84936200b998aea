"""The images of a dataset folder (`source.kind: folder`)."""

from __future__ import annotations

import time
from pathlib import Path

from vision.clock import Clock, MonotonicClock
from vision.datasets import scan_folder
from vision.frame import Frame, GroundTruth
from vision.imageio import ImageReadError, read_rgb
from vision.sources.base import (
    EndOfStream,
    Lifecycle,
    Pacer,
    SourceFailure,
    SourceOpenError,
)


class ImageFolderSource(Lifecycle):
    """The images of a dataset folder (`{label}_{id}.jpg`, or `free/` + `blocked/`), in name order.

    The label in the name becomes the frame's ground truth, so a drive over a folder can be scored.
    An unreadable file raises `SourceFailure` (the loop stops the car and goes on to the next file).
    """

    def __init__(
        self, path: str | Path, *, fps: float = 0.0, loop: bool = False, clock: Clock | None = None
    ) -> None:
        self.path = Path(path)
        self.name = f"folder:{self.path.name}"
        self.loop = loop
        self._pacer = Pacer(fps, clock or MonotonicClock())
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
