"""A short simulated drive towards a can, stopped by ground truth at the cutoff: an MP4 and a contact sheet.

This is what `car sim demo` runs until the closed control loop exists: it shows the world, the can
approaching, and where the ground truth flips to STOP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.errors import VisionError
from vision.frame import GroundTruth
from vision.imageio import write_rgb
from vision.labels import STOP, label_name
from vision.sim.config import WorldConfig
from vision.sim.kinds import Placement, sample_scene
from vision.sim.world import World


@dataclass(frozen=True, slots=True)
class DemoResult:
    video: Path
    sheet: Path
    frames: int
    stop_distance_m: float | None
    """Where the car stood still, from its front to the can (None: it never stopped)."""
    collided: bool


def caption(index: int, truth: GroundTruth, speed_mps: float) -> str:
    distance = "no can" if truth.distance_m is None else f"{truth.distance_m:.2f} m"
    return f"#{index} {label_name(truth.label)} {distance} {speed_mps:.2f} m/s"


def _draw_caption(rgb: np.ndarray, text: str, stop: bool) -> np.ndarray:
    out = rgb.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 16), (0, 0, 0), thickness=-1)
    colour = (255, 80, 80) if stop else (120, 255, 120)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1, cv2.LINE_AA)
    return out


def contact_sheet(
    images: Sequence[np.ndarray], captions: Sequence[str], stops: Sequence[bool], columns: int = 4
) -> np.ndarray:
    """Tile captioned RGB frames into one image (rows of `columns`; empty cells are black)."""
    if not images:
        raise ValueError("contact_sheet: no images")
    tiles = [_draw_caption(img, text, stop) for img, text, stop in zip(images, captions, stops, strict=True)]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.zeros((rows * (h + 2), columns * (w + 2), 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
    return sheet


class Mp4Writer:
    """cv2.VideoWriter (mp4v) fed with RGB frames: the RGB→BGR swap happens here, once."""

    def __init__(self, path: Path, fps: float, size: int) -> None:
        self.path = path
        fourcc = cv2.VideoWriter.fourcc(*"mp4v")
        self._writer = cv2.VideoWriter(str(path), fourcc, fps, (size, size))
        if not self._writer.isOpened():
            raise VisionError(
                f"{path}: cannot open an mp4v video writer; check the folder and OpenCV's codecs"
            )

    def write(self, rgb: np.ndarray) -> None:
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_demo(
    out: str | Path,
    seed: int = 0,
    *,
    config: WorldConfig | None = None,
    fps: float = 15.0,
    speed_fraction: float = 0.6,
    max_seconds: float = 12.0,
    sheet_frames: int = 12,
) -> DemoResult:
    """Drive at `speed_fraction` of full speed towards a can 1.2–2 m ahead; stop when the truth is STOP."""
    if not (0.0 < speed_fraction <= 1.0):
        raise VisionError(f"speed fraction {speed_fraction!r}: must be in (0, 1]")
    config = config or WorldConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, "can_path", config, Placement(ahead=(1.2, 2.0)))
    world = World(config, scene, seed=seed)
    dt = 1.0 / fps
    frames: list[np.ndarray] = []
    captions: list[str] = []
    stops: list[bool] = []
    stopped_frames = 0
    video_path = out / "demo.mp4"
    with Mp4Writer(video_path, fps, config.image_size) as video:
        for index in range(int(max_seconds * fps)):
            rgb, truth = world.render()
            speed = 0.0 if truth.label == STOP else speed_fraction * config.max_speed_mps
            text = caption(index, truth, speed)
            video.write(_draw_caption(rgb, text, truth.label == STOP))
            frames.append(rgb)
            captions.append(text)
            stops.append(truth.label == STOP)
            world.step(speed, dt)
            stopped_frames = stopped_frames + 1 if speed == 0.0 else 0
            if stopped_frames >= fps or world.reached_end() or world.collided():
                break
    picks = np.unique(np.linspace(0, len(frames) - 1, min(sheet_frames, len(frames))).round().astype(int))
    sheet = contact_sheet([frames[i] for i in picks], [captions[i] for i in picks], [stops[i] for i in picks])
    sheet_path = out / "contact_sheet.png"
    write_rgb(sheet_path, sheet)
    return DemoResult(
        video=video_path,
        sheet=sheet_path,
        frames=len(frames),
        stop_distance_m=world.can_distance() if stopped_frames else None,
        collided=world.collided(),
    )
