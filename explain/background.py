"""Background (reference) frames for DeepSHAP: a folder, a drive log, or simulated frames with a seed.

`--background` takes a SPEC: `sim:SEED` (default `sim:0`), `folder:PATH`, `log:PATH`, or a bare path (a
folder or a `.sqlite` drive log); `@N` at the end sets how many frames (default 100, as published), e.g.
`folder:data/train@50`. Frames are chosen deterministically (evenly spaced for folders and logs), and the
audit records exactly which ones were used (`Background.ids`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explain.errors import ExplainError

DEFAULT_COUNT = 100
DEFAULT_SPEC = "sim:0"


@dataclass(frozen=True, slots=True)
class Background:
    """RGB uint8 frames at the network's input size (N×S×S×3), and what each one is."""

    spec: str
    images: np.ndarray
    ids: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True, slots=True)
class BackgroundSpec:
    kind: str
    target: str
    count: int

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.target}@{self.count}"


class BackgroundSource(ABC):
    kind: str

    @abstractmethod
    def load(self, spec: BackgroundSpec, size: int) -> Background: ...


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """`count` indices spread over range(total), first and last included (all of them if fewer)."""
    if total <= count:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, count)).astype(int))


class SimSource(BackgroundSource):
    kind = "sim"

    def load(self, spec: BackgroundSpec, size: int) -> Background:
        try:
            seed = int(spec.target)
        except ValueError:
            raise ExplainError(f"--background {spec.text}: sim needs an integer seed, e.g. sim:0") from None
        images = simulated_frames(spec.count, seed, size)
        return Background(spec.text, images, tuple(f"sim:{seed}#{i}" for i in range(spec.count)))


def simulated_frames(count: int, seed: int, size: int = 224) -> np.ndarray:
    """`count` frames of the simulated world's default scene mix, reproducible from `seed`."""
    from vision.preprocess import fit_to_input
    from vision.sim import World, WorldConfig, sample_scene

    rng = np.random.default_rng(seed)
    config = WorldConfig()
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for i in range(count):
        world = World(config, sample_scene(rng, config=config), seed=int(rng.integers(2**31)))
        out[i] = fit_to_input(world.render()[0], size)
    return out


class FolderSource(BackgroundSource):
    kind = "folder"

    def load(self, spec: BackgroundSpec, size: int) -> Background:
        from vision.datasets import load_images, scan_folder

        scan = scan_folder(spec.target)
        picked = [scan.items[i] for i in evenly_spaced(len(scan.items), spec.count)]
        images = load_images(picked, size)
        return Background(spec.text, images, tuple(str(item.path) for item in picked))


class LogSource(BackgroundSource):
    kind = "log"

    def load(self, spec: BackgroundSpec, size: int) -> Background:
        from car.drivelog import DriveLogReader
        from vision.preprocess import fit_to_input

        with DriveLogReader(spec.target) as log:
            with_frames = [r.seq for r in log.records(images=False) if r.frame_seq is not None]
            if not with_frames:
                raise ExplainError(f"--background {spec.text}: the drive log holds no frames")
            seqs = [with_frames[i] for i in evenly_spaced(len(with_frames), spec.count)]
            images, ids = [], []
            for seq in seqs:
                rgb = log[seq].rgb
                if rgb is not None:
                    images.append(fit_to_input(rgb, size))
                    ids.append(f"{spec.target}#seq{seq}")
        return Background(spec.text, np.stack(images), tuple(ids))


SOURCES: dict[str, BackgroundSource] = {s.kind: s for s in (SimSource(), FolderSource(), LogSource())}


def parse_spec(text: str) -> BackgroundSpec:
    """`sim:0`, `folder:PATH`, `log:PATH`, a bare folder or .sqlite path; optional `@N` frame count."""
    count = DEFAULT_COUNT
    body = text.strip()
    match = re.fullmatch(r"(.*)@(\d+)", body)
    if match:
        body, count = match.group(1), int(match.group(2))
    if count < 1:
        raise ExplainError(f"--background {text!r}: the frame count after @ must be at least 1")
    kind, sep, target = body.partition(":")
    if sep and kind in SOURCES:
        return BackgroundSpec(kind, target, count)
    path = Path(body)
    if path.is_dir():
        return BackgroundSpec("folder", body, count)
    if path.is_file():
        return BackgroundSpec("log", body, count)
    raise ExplainError(
        f"--background {text!r}: not sim:SEED, folder:PATH, log:PATH, nor an existing folder or drive log"
    )


def load_background(text: str, size: int) -> Background:
    spec = parse_spec(text)
    background = SOURCES[spec.kind].load(spec, size)
    if len(background) == 0:
        raise ExplainError(f"--background {text!r}: no frames found")
    return background
