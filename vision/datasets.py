"""Image folders of GO/STOP frames: find them, check them, load them.

Two layouts are understood (a small registry, so a third is one class more):

- `label_prefix`: the published experiment's naming, `{label}_{uuid}.jpg` in one folder (0 = GO,
  1 = STOP). `car sim dataset` writes this, plus `masks/<stem>.png` (the can's pixels) and
  `manifest.jsonl` (every ground-truth field) and `dataset.json` (the command and code version that wrote
  the folder), which the scan never mistakes for frames.
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
from typing import Any, Protocol

import numpy as np

from vision.errors import VisionError
from vision.imageio import ImageReadError, read_rgb
from vision.labels import GO, LABEL_NAMES, STOP
from vision.preprocess import INPUT_SIZE, fit_to_input

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
MASK_DIR = "masks"
MANIFEST_NAME = "manifest.jsonl"
PROVENANCE_NAME = "dataset.json"
"""Written by `car sim dataset` / `car sim collect`: the command and code version that made the folder."""
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
            if path.name in (MANIFEST_NAME, PROVENANCE_NAME):
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


@dataclass(frozen=True, slots=True)
class DecodedFrames:
    """What `decode_counting` made of a list of items: the decodable frames and why the others failed."""

    images: np.ndarray
    """uint8 N×size×size×3, the decodable items' frames in order."""
    decoded: tuple[int, ...]
    """Indices (into the items given) of those frames."""
    failed: tuple[tuple[int, SkipReason], ...]
    """Index and reason of every item that could not be used (unreadable, or decoded but too small)."""

    def why_none_usable(self) -> str:
        """Why no frame is usable, by reason: a 10×10 image decodes, it is only too small."""
        counts = Counter(reason for _, reason in self.failed)
        n = len(self.failed)
        parts = []
        if counts[SkipReason.TOO_SMALL]:
            parts.append(
                f"{counts[SkipReason.TOO_SMALL]} under the {MIN_IMAGE_SIDE} px minimum side "
                f"(they decode, but are too small to resize to the network's input)"
            )
        if counts[SkipReason.UNREADABLE]:
            parts.append(f"{counts[SkipReason.UNREADABLE]} could not be decoded as images")
        return f"none of its {n} image files is usable: {'; '.join(parts)}"


def decode_counting(
    items: Sequence[DatasetItem], size: int, *, progress: bool = False, desc: str = "loading frames"
) -> DecodedFrames:
    """Decode `items`, skipping (and reporting) the unreadable and too small ones instead of raising.

    With `progress`, the bar starts at the first frame that decodes: a folder where nothing is usable
    prints no bar ahead of its one-line error."""
    images = np.empty((len(items), size, size, 3), dtype=np.uint8)
    decoded: list[int] = []
    failed: list[tuple[int, SkipReason]] = []
    bar = _LazyBar(len(items), desc) if progress else None
    for i, item in enumerate(items):
        try:
            images[len(decoded)] = read_frame(item.path, size)
        except ImageTooSmallError:
            failed.append((i, SkipReason.TOO_SMALL))
        except ImageReadError:
            failed.append((i, SkipReason.UNREADABLE))
        else:
            decoded.append(i)
        if bar is not None:
            bar.step(decoded_any=bool(decoded))
    if bar is not None:
        bar.close()
    used = images if len(decoded) == len(items) else images[: len(decoded)].copy()
    return DecodedFrames(used, tuple(decoded), tuple(failed))


class _LazyBar:
    """A tqdm bar that appears only once something has decoded (then counting what came before)."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._bar: Any = None

    def step(self, decoded_any: bool) -> None:
        self.done += 1
        if self._bar is None and decoded_any:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.done - 1, desc=self.desc, unit="img")
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def load_dataset(
    root: str | Path, size: int = INPUT_SIZE, progress: bool = False, limit: int | None = None
) -> LoadedDataset:
    """Scan `root` and decode every usable frame; unreadable or too small files are skipped and counted."""
    scan = scan_folder(root)
    candidates = scan.items if limit is None else scan.items[:limit]
    frames = decode_counting(candidates, size, progress=progress, desc=f"loading {scan.root}")
    if not frames.decoded:
        raise VisionError(f"{scan.root}: {frames.why_none_usable()}")
    skipped: Counter[SkipReason] = Counter(scan.skipped)
    skipped.update(reason for _, reason in frames.failed)
    kept = tuple(candidates[i] for i in frames.decoded)
    labels = np.fromiter((it.label for it in kept), dtype=np.int64, count=len(kept))
    return LoadedDataset(frames.images, labels, kept, scan, dict(skipped))


# -- several folders as one training set ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FolderPart:
    """One folder's share of a combined set: how many of its frames were used, per label."""

    root: Path
    layout: str
    n_go: int
    n_stop: int
    skipped: Mapping[SkipReason, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.n_go + self.n_stop

    def describe(self) -> str:
        """`runs/sim-train (6000: GO 3471, STOP 2529)`: what a bundle's data summary lists per folder."""
        return f"{self.root} ({self.n}: GO {self.n_go}, STOP {self.n_stop})"


@dataclass(frozen=True, slots=True)
class CombinedDataset:
    """Decoded frames of one or more folders, in folder order then name order, with per-folder counts."""

    images: np.ndarray
    labels: np.ndarray
    items: tuple[DatasetItem, ...]
    parts: tuple[FolderPart, ...]

    def describe(self) -> str:
        return " + ".join(part.describe() for part in self.parts)


def scan_folders(roots: Sequence[str | Path]) -> tuple[FolderScan, ...]:
    """`scan_folder` of each root, in order. A folder named twice (even by another path) is an error:
    its frames would count double and could sit on both sides of the validation split."""
    if not roots:
        raise VisionError("no data folder given; pass at least one folder of {label}_{id}.jpg frames")
    seen: dict[Path, str] = {}
    for root in roots:
        resolved = Path(root).resolve()
        if resolved in seen:
            raise VisionError(f"{root}: the same folder as {seen[resolved]}; pass each data folder once")
        seen[resolved] = str(root)
    return tuple(scan_folder(root) for root in roots)


def seeded_subset(n: int, limit: int, seed: int) -> np.ndarray:
    """Indices of `--limit` items out of `n`, in order: a seeded random choice (all of them when `limit`
    is not smaller). Random, not the first ones: folders sort by name, names start with the label, and
    the first N files would all be GO."""
    if limit < 1:
        raise VisionError(f"--limit {limit}: must be at least 1")
    if limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def load_folders(
    roots: Sequence[str | Path],
    size: int = INPUT_SIZE,
    *,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CombinedDataset:
    """Decode every usable frame of every folder into one array (unreadable or tiny files are skipped and
    counted per folder). With `limit`, a seeded random subset of that size over all folders together
    (names start with the label, so the first N files would all be GO)."""
    scans = scan_folders(roots)
    owner = [i for i, scan in enumerate(scans) for _ in scan.items]
    candidates = [item for scan in scans for item in scan.items]
    if limit is not None:
        keep = seeded_subset(len(candidates), limit, seed)
        candidates = [candidates[int(i)] for i in keep]
        owner = [owner[int(i)] for i in keep]
    frames = decode_counting(candidates, size, progress=progress)
    if not frames.decoded:
        names = ", ".join(str(scan.root) for scan in scans)
        raise VisionError(f"{names}: {frames.why_none_usable()}")
    skipped: list[Counter[SkipReason]] = [Counter(scan.skipped) for scan in scans]
    for i, reason in frames.failed:
        skipped[owner[i]][reason] += 1
    kept = [candidates[i] for i in frames.decoded]
    kept_owner = [owner[i] for i in frames.decoded]
    labels = np.fromiter((it.label for it in kept), dtype=np.int64, count=len(kept))
    parts = []
    for i, scan in enumerate(scans):
        mine = [label for label, part in zip(labels.tolist(), kept_owner, strict=True) if part == i]
        n_stop = sum(label == STOP for label in mine)
        parts.append(FolderPart(scan.root, scan.layout, len(mine) - n_stop, n_stop, dict(skipped[i])))
    return CombinedDataset(frames.images, labels, tuple(kept), tuple(parts))


@dataclass(frozen=True, slots=True)
class ClosedLoopFields:
    """Where a frame collected in closed loop (`car sim collect`) came from and what the driving model made
    of it. Written as extra keys on its manifest line; readers that do not know them ignore them."""

    run: int
    """The run's number within the collection (`car sim eval`'s run index for the same seed)."""
    run_seed: int
    """The run's world seed (the scene and its per-frame noise)."""
    frame: int
    """The frame's number within its run (0 = the start pose)."""
    p_stop: float | None
    """The driving network's P(STOP) on this frame (None: no usable inference)."""
    decision: str
    """What the policy decided on this frame: GO or STOP."""
    reason: str
    """The policy's reason (stop_probability, awaiting_go, fault, ...)."""
    outcome: str
    """How the run ended: stopped_for_can, false_stop, collision, reached_end or timeout."""
    kept_because: str
    """The `--keep` rule that kept the frame (disagree, error, every, all)."""
    model: str
    """The driving bundle's name."""

    def to_dict(self) -> dict[str, object]:
        return {
            "run": self.run,
            "run_seed": self.run_seed,
            "frame": self.frame,
            "p_stop": self.p_stop,
            "decision": self.decision,
            "reason": self.reason,
            "outcome": self.outcome,
            "kept_because": self.kept_because,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClosedLoopFields:
        return cls(
            run=int(d["run"]),
            run_seed=int(d["run_seed"]),
            frame=int(d["frame"]),
            p_stop=None if d["p_stop"] is None else float(d["p_stop"]),
            decision=str(d["decision"]),
            reason=str(d["reason"]),
            outcome=str(d["outcome"]),
            kept_because=str(d["kept_because"]),
            model=str(d["model"]),
        )


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One line of `manifest.jsonl`: a generated frame's file and every ground-truth field.

    `car sim dataset` writes `seed` = its --seed and `index` = the frame's number (the pair regenerates
    the frame); `car sim collect` writes `seed` = its --seed, `index` = the line's number, and the
    closed-loop fields (`closed_loop`) as extra keys on the same line.
    """

    file: str
    label: int
    scene: str
    distance_m: float | None
    lateral_m: float | None
    mask: str | None
    seed: int
    index: int
    closed_loop: ClosedLoopFields | None = None

    def to_json(self) -> str:
        doc: dict[str, object] = {
            "file": self.file,
            "label": self.label,
            "scene": self.scene,
            "distance_m": self.distance_m,
            "lateral_m": self.lateral_m,
            "mask": self.mask,
            "seed": self.seed,
            "index": self.index,
        }
        if self.closed_loop is not None:
            doc.update(self.closed_loop.to_dict())
        return json.dumps(doc, sort_keys=True)

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
            closed_loop=ClosedLoopFields.from_dict(d) if "run" in d else None,
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
