"""Image folders of GO/STOP frames: find them, check them, load them.

Two layouts are understood (a small registry, so a third is one class more):

- `label_prefix`: the published experiment's naming, `{label}_{uuid}.jpg` in one folder (0 = GO,
  1 = STOP). `car sim dataset` writes this, plus `masks/<stem>.png` (the can's pixels) and
  `manifest.jsonl` (every ground-truth field), which the scan never mistakes for frames.
- `free_blocked`: `free/*.jpg` (GO) and `blocked/*.jpg` (STOP), as other robot-car projects collect.

A file that is not usable (a wrong name, not an image, unreadable, too small) is skipped and counted by
reason; only a folder with nothing usable is an error. Images of any size are brought to the network's
square input by the one shared function, `vision.preprocess.fit_to_input`.
"""

from __future__ import annotations

import enum
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from vision.errors import VisionError
from vision.imageio import ImageReadError, read_rgb
from vision.labels import GO, LABEL_NAMES, STOP
from vision.preprocess import INPUT_SIZE, fit_to_input

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
MASK_DIR = "masks"
MANIFEST_NAME = "manifest.jsonl"
MIN_IMAGE_SIDE = 32
"""Smaller images carry too little to be resized to the input size; they are skipped as `too_small`."""


class ImageTooSmallError(ImageReadError):
    """An image smaller than MIN_IMAGE_SIDE on a side."""


_LABEL_NAME = re.compile(r"^(?P<label>\d+)_(?P<ident>.+)$")


class SkipReason(enum.Enum):
    """Why a file in a dataset folder was not used."""

    BAD_NAME = "bad_name"
    NOT_IMAGE = "not_image"
    UNREADABLE = "unreadable"
    TOO_SMALL = "too_small"

    @property
    def explanation(self) -> str:
        return _SKIP_EXPLANATIONS[self]


_SKIP_EXPLANATIONS: Mapping[SkipReason, str] = {
    SkipReason.BAD_NAME: "name is not {label}_{id}.jpg with label 0 (GO) or 1 (STOP)",
    SkipReason.NOT_IMAGE: f"suffix is not one of {sorted(IMAGE_SUFFIXES)}",
    SkipReason.UNREADABLE: "file cannot be decoded as an image",
    SkipReason.TOO_SMALL: f"image is smaller than {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}",
}


@dataclass(frozen=True, slots=True)
class DatasetItem:
    """One frame file with its label, and the can's mask file when the simulator wrote one."""

    path: Path
    label: int
    mask_path: Path | None = None

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass(frozen=True, slots=True)
class FolderScan:
    """What `scan_folder` found: usable items (sorted by path), skipped files counted by reason."""

    root: Path
    layout: str
    items: tuple[DatasetItem, ...]
    skipped: Mapping[SkipReason, int] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return np.fromiter((item.label for item in self.items), dtype=np.int64, count=len(self.items))

    def label_counts(self) -> tuple[int, int]:
        """(number of GO items, number of STOP items)."""
        n_stop = sum(item.label == STOP for item in self.items)
        return len(self.items) - n_stop, n_stop

    def summary(self) -> str:
        """One line: where, which layout, how many per label, what was skipped and why."""
        n_go, n_stop = self.label_counts()
        text = f"{self.root}: {len(self.items)} images ({self.layout}; GO {n_go}, STOP {n_stop})"
        if self.skipped:
            parts = ", ".join(f"{n} {reason.value}" for reason, n in sorted(self.skipped.items(), key=_key))
            text += f"; skipped {parts}"
        return text


def _key(pair: tuple[SkipReason, int]) -> str:
    return pair[0].value


def parse_label_name(path: Path) -> int | None:
    """The label of a `{label}_{id}.ext` file name, or None when the name does not follow it."""
    match = _LABEL_NAME.match(path.stem)
    if match is None:
        return None
    label = int(match.group("label"))
    return label if label in (GO, STOP) else None


def _image_files(folder: Path) -> Iterable[Path]:
    """Visible regular files directly inside `folder` (sub-folders such as masks/ are not entered)."""
    return (p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith("."))


class FolderLayout(Protocol):
    """A way labelled frames are arranged on disk."""

    name: str

    def matches(self, root: Path) -> bool: ...

    def collect(self, root: Path, skipped: Counter[SkipReason]) -> list[DatasetItem]: ...


class LabelPrefixLayout:
    """`{label}_{uuid}.jpg` in one folder; masks (if any) in `masks/<stem>.png`."""

    name = "label_prefix"

    def matches(self, root: Path) -> bool:
        return True  # the fallback: any folder may hold label-named files

    def collect(self, root: Path, skipped: Counter[SkipReason]) -> list[DatasetItem]:
        mask_dir = root / MASK_DIR
        items: list[DatasetItem] = []
        for path in _image_files(root):
            if path.name == MANIFEST_NAME:
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped[SkipReason.NOT_IMAGE] += 1
                continue
            label = parse_label_name(path)
            if label is None:
                skipped[SkipReason.BAD_NAME] += 1
                continue
            mask = mask_dir / f"{path.stem}.png"
            items.append(DatasetItem(path, label, mask if mask.is_file() else None))
        return items


class FreeBlockedLayout:
    """`free/` (GO) and `blocked/` (STOP) sub-folders; any file name."""

    name = "free_blocked"
    folders: Mapping[str, int] = {"free": GO, "blocked": STOP}

    def matches(self, root: Path) -> bool:
        return any((root / name).is_dir() for name in self.folders)

    def collect(self, root: Path, skipped: Counter[SkipReason]) -> list[DatasetItem]:
        items: list[DatasetItem] = []
        for name, label in self.folders.items():
            folder = root / name
            if not folder.is_dir():
                continue
            for path in _image_files(folder):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    skipped[SkipReason.NOT_IMAGE] += 1
                    continue
                items.append(DatasetItem(path, label))
        return items


LAYOUTS: tuple[FolderLayout, ...] = (FreeBlockedLayout(), LabelPrefixLayout())
"""Tried in order; the first that matches the folder is used."""


def scan_folder(root: str | Path) -> FolderScan:
    """Find the labelled frames in `root` without decoding them (see the module docstring for layouts).

    Raises VisionError when the folder does not exist or holds no usable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise VisionError(f"{root}: no such folder; pass a folder of {{label}}_{{id}}.jpg or free/+blocked/")
    layout = next(candidate for candidate in LAYOUTS if candidate.matches(root))
    skipped: Counter[SkipReason] = Counter()
    items = sorted(layout.collect(root, skipped), key=lambda item: str(item.path))
    if not items:
        why = "; ".join(f"{n} {r.value} ({r.explanation})" for r, n in skipped.items()) or "it is empty"
        raise VisionError(
            f"{root}: no usable images ({why}); expected {LABEL_NAMES[0]}/{LABEL_NAMES[1]} frames named "
            "{label}_{id}.jpg (0 = GO, 1 = STOP) or sub-folders free/ and blocked/"
        )
    return FolderScan(root, layout.name, tuple(items), dict(skipped))


def read_frame(path: Path, size: int = INPUT_SIZE) -> np.ndarray:
    """One frame file as RGB uint8 size×size×3 (centre-cropped and resized by `fit_to_input`).

    Raises ImageReadError (a VisionError) for an unreadable file, ImageTooSmallError for a tiny one.
    """
    rgb = read_rgb(path)
    if min(rgb.shape[:2]) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"{path}: image is {rgb.shape[1]}×{rgb.shape[0]}, smaller than "
            f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}; remove it or use a larger capture"
        )
    return fit_to_input(rgb, size)


def read_mask(path: Path, size: int = INPUT_SIZE) -> np.ndarray:
    """A mask PNG (white = can) as bool size×size, with the same crop/resize as its frame."""
    rgb = read_rgb(path)
    return fit_to_input(rgb, size)[:, :, 0] >= 128


def load_images(items: Sequence[DatasetItem], size: int = INPUT_SIZE) -> np.ndarray:
    """Decode `items` into one uint8 N×size×size×3 array, in order.

    Strict: an unreadable or too small file raises ImageReadError naming it (labels stay aligned with
    images). To skip such files and count them instead, use `load_dataset`.
    """
    out = np.empty((len(items), size, size, 3), dtype=np.uint8)
    for i, item in enumerate(items):
        out[i] = read_frame(item.path, size)
    return out


@dataclass(frozen=True, slots=True)
class LoadedDataset:
    """Decoded frames with their labels, aligned; `skipped` includes files that failed to decode."""

    images: np.ndarray
    labels: np.ndarray
    items: tuple[DatasetItem, ...]
    scan: FolderScan
    skipped: Mapping[SkipReason, int]

    def masks(self, size: int | None = None) -> list[np.ndarray | None]:
        """The can's mask per item (None where the folder has none)."""
        side = self.images.shape[1] if size is None else size
        return [None if it.mask_path is None else read_mask(it.mask_path, side) for it in self.items]


def load_dataset(
    root: str | Path, size: int = INPUT_SIZE, progress: bool = False, limit: int | None = None
) -> LoadedDataset:
    """Scan `root` and decode every usable frame; unreadable or too small files are skipped and counted."""
    scan = scan_folder(root)
    candidates = scan.items if limit is None else scan.items[:limit]
    skipped: Counter[SkipReason] = Counter(scan.skipped)
    images: list[np.ndarray] = []
    kept: list[DatasetItem] = []
    iterator: Iterable[DatasetItem] = candidates
    if progress:
        from tqdm import tqdm

        iterator = tqdm(candidates, desc=f"loading {scan.root}", unit="img")
    for item in iterator:
        try:
            images.append(read_frame(item.path, size))
        except ImageTooSmallError:
            skipped[SkipReason.TOO_SMALL] += 1
            continue
        except ImageReadError:
            skipped[SkipReason.UNREADABLE] += 1
            continue
        kept.append(item)
    if not kept:
        raise VisionError(f"{scan.root}: none of its {len(candidates)} image files could be decoded")
    stacked = np.stack(images) if images else np.empty((0, size, size, 3), np.uint8)
    labels = np.fromiter((it.label for it in kept), dtype=np.int64, count=len(kept))
    return LoadedDataset(stacked, labels, tuple(kept), scan, dict(skipped))


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One line of `manifest.jsonl`: a generated frame's file and every ground-truth field."""

    file: str
    label: int
    scene: str
    distance_m: float | None
    lateral_m: float | None
    mask: str | None
    seed: int
    index: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "file": self.file,
                "label": self.label,
                "scene": self.scene,
                "distance_m": self.distance_m,
                "lateral_m": self.lateral_m,
                "mask": self.mask,
                "seed": self.seed,
                "index": self.index,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, line: str) -> ManifestRecord:
        d = json.loads(line)
        return cls(
            file=str(d["file"]),
            label=int(d["label"]),
            scene=str(d["scene"]),
            distance_m=None if d["distance_m"] is None else float(d["distance_m"]),
            lateral_m=None if d["lateral_m"] is None else float(d["lateral_m"]),
            mask=None if d["mask"] is None else str(d["mask"]),
            seed=int(d["seed"]),
            index=int(d["index"]),
        )


def read_manifest(root: str | Path) -> list[ManifestRecord]:
    """The records of `root/manifest.jsonl` (written by `car sim dataset`); a bad line is a VisionError."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise VisionError(f"{path}: no manifest; only folders written by `car sim dataset` have one")
    records: list[ManifestRecord] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(ManifestRecord.from_json(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise VisionError(f"{path}:{number}: not a manifest record ({exc}); regenerate it") from exc
    return records
