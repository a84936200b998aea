"""Generated datasets: N simulated frames as `{label}_{uuid}.jpg`, their can masks and a JSONL manifest.

Frame i of seed S is drawn from a generator seeded by (S, i): the same seed writes the same files (names
included), and any one frame can be regenerated alone. Writing is append-only and each manifest line is
flushed after its image and mask, so an interrupted run leaves a consistent, loadable folder.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.datasets import (
    IMAGE_SUFFIXES,
    MANIFEST_NAME,
    MASK_DIR,
    PROVENANCE_NAME,
    ClosedLoopFields,
    ManifestRecord,
)
from vision.errors import VisionError
from vision.frame import GroundTruth
from vision.imageio import write_rgb
from vision.labels import LABEL_NAMES
from vision.provenance import provenance
from vision.sim.config import WorldConfig
from vision.sim.kinds import SCENE_KINDS, pick_kind, sample_scene
from vision.sim.render import renderer_for
from vision.sim.world import ground_truth


def random_uuid(rng: np.random.Generator) -> uuid.UUID:
    """A version-4 UUID drawn from `rng`: file names that are unique, yet the same for the same seed."""
    high, low = (int(v) for v in rng.integers(0, 2**64, size=2, dtype=np.uint64))
    return uuid.UUID(int=(high << 64) | low, version=4)


@dataclass(frozen=True, slots=True)
class GeneratedFrame:
    rgb: np.ndarray
    truth: GroundTruth
    name: str
    """`{label}_{uuid}` (no suffix)."""


def generate_frame(
    config: WorldConfig, seed: int, index: int, weights: Mapping[str, float] | None = None
) -> GeneratedFrame:
    """Frame `index` of dataset `seed`: a fresh random scene seen from its start pose."""
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng, pick_kind(rng, weights), config)
    ident = random_uuid(rng)
    # what World.render does for its first frame, without a second generator
    pitch, roll = (float(v) for v in rng.normal(0.0, config.camera_jitter_deg, size=2))
    result = renderer_for(config).render(scene, scene.start, rng, pitch, roll)
    rgb, truth = result.rgb, ground_truth(config, scene, scene.start, result.can_mask)
    return GeneratedFrame(rgb, truth, frame_stem(truth.label, ident))


def frame_stem(label: int, ident: uuid.UUID) -> str:
    """`{label}_{uuid}`: the published naming every loader reads the label from."""
    return f"{label}_{ident}"


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    out: Path
    n: int
    by_label: tuple[int, int]
    by_kind: Mapping[str, int]
    by_kind_label: Mapping[tuple[str, int], int]
    seconds: float

    def format(self) -> str:
        go, stop = self.by_label
        lines = [
            f"wrote {self.n} frames to {self.out} in {self.seconds:.1f} s "
            f"({self.n / max(self.seconds, 1e-9):.0f} frames/s)",
            f"  labels: {LABEL_NAMES[0]} {go} ({go / max(self.n, 1):.0%}), {LABEL_NAMES[1]} {stop} "
            f"({stop / max(self.n, 1):.0%})",
            "  scene kinds:",
        ]
        for kind in SCENE_KINDS:
            if self.by_kind.get(kind):
                go_k = self.by_kind_label.get((kind, 0), 0)
                stop_k = self.by_kind_label.get((kind, 1), 0)
                lines.append(f"    {kind:<18} {self.by_kind[kind]:>6}   (GO {go_k}, STOP {stop_k})")
        lines.append(f"  masks in {self.out / MASK_DIR}, ground truth in {self.out / MANIFEST_NAME}")
        return "\n".join(lines)


def check_empty_folder(out: Path) -> None:
    """`out` may be written: a new folder, or one without frames or a manifest (never mix two sets)."""
    if out.exists() and not out.is_dir():
        raise VisionError(f"--out {out}: exists and is not a folder; choose a folder path")
    if out.is_dir():
        clash = (out / MANIFEST_NAME).exists() or any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in out.iterdir() if p.is_file()
        )
        if clash:
            raise VisionError(
                f"--out {out}: already holds frames or a manifest; choose an empty or new folder"
            )


class FrameFolderWriter:
    """Writes labelled frames into a dataset folder: `{label}_{uuid}.jpg`, `masks/<stem>.png` (white = can,
    only when the can is visible) and one `manifest.jsonl` line per frame, flushed after its files, so an
    interrupted run leaves a consistent, loadable folder. Counts what it wrote. Use as a context manager.
    """

    def __init__(self, out: str | Path, jpeg_quality: int = 92) -> None:
        if not 1 <= jpeg_quality <= 100:
            raise VisionError(f"--jpeg-quality {jpeg_quality}: must be in 1..100")
        self.out = Path(out)
        self.jpeg_quality = jpeg_quality
        check_empty_folder(self.out)
        (self.out / MASK_DIR).mkdir(parents=True, exist_ok=True)
        (self.out / PROVENANCE_NAME).write_text(json.dumps(provenance(), indent=1) + "\n", encoding="utf-8")
        self._manifest = (self.out / MANIFEST_NAME).open("a", encoding="utf-8")
        self.labels: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.kind_labels: Counter[tuple[str, int]] = Counter()

    @property
    def written(self) -> int:
        return sum(self.labels.values())

    def write(
        self,
        stem: str,
        rgb: np.ndarray,
        truth: GroundTruth,
        *,
        seed: int,
        index: int,
        closed_loop: ClosedLoopFields | None = None,
    ) -> ManifestRecord:
        """Write one frame (named `stem`.jpg), its mask and its manifest line; return the line's record."""
        image_name = f"{stem}.jpg"
        write_rgb(self.out / image_name, rgb, jpeg_quality=self.jpeg_quality)
        mask_name: str | None = None
        if truth.mask is not None and truth.mask.any():
            mask_name = f"{MASK_DIR}/{stem}.png"
            write_rgb(
                self.out / mask_name, np.repeat(truth.mask[:, :, None], 3, axis=2).astype(np.uint8) * 255
            )
        record = ManifestRecord(
            file=image_name,
            label=truth.label,
            scene=truth.scene,
            distance_m=None if truth.distance_m is None else round(truth.distance_m, 4),
            lateral_m=None if truth.lateral_m is None else round(truth.lateral_m, 4),
            mask=mask_name,
            seed=seed,
            index=index,
            closed_loop=closed_loop,
        )
        self._manifest.write(record.to_json() + "\n")
        self._manifest.flush()
        self.labels[truth.label] += 1
        self.kinds[truth.scene] += 1
        self.kind_labels[(truth.scene, truth.label)] += 1
        return record

    def close(self) -> None:
        self._manifest.close()

    def __enter__(self) -> FrameFolderWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_dataset(
    out: str | Path,
    n: int,
    seed: int = 0,
    *,
    config: WorldConfig | None = None,
    weights: Mapping[str, float] | None = None,
    jpeg_quality: int = 92,
    progress: bool = True,
) -> DatasetSummary:
    """Write `n` frames, masks (`masks/<stem>.png`, white = can) and `manifest.jsonl` into `out`."""
    if n < 1:
        raise VisionError(f"--n {n}: need at least one frame")
    if weights is not None:
        unknown = sorted(set(weights) - set(SCENE_KINDS))
        if unknown:
            raise VisionError(f"scene kinds {unknown} are unknown; choose from {sorted(SCENE_KINDS)}")
    config = config or WorldConfig()
    out = Path(out)
    started = time.perf_counter()
    indices: range = range(n)
    with FrameFolderWriter(out, jpeg_quality) as writer:
        iterator = indices
        if progress:
            from tqdm import tqdm

            iterator = tqdm(indices, desc=f"rendering {out}", unit="frame")  # type: ignore[assignment]
        for i in iterator:
            frame = generate_frame(config, seed, i, weights)
            writer.write(frame.name, frame.rgb, frame.truth, seed=seed, index=i)
    return DatasetSummary(
        out=out,
        n=n,
        by_label=(writer.labels[0], writer.labels[1]),
        by_kind=dict(writer.kinds),
        by_kind_label=dict(writer.kind_labels),
        seconds=time.perf_counter() - started,
    )
