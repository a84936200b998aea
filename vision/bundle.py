"""Model bundles: a folder with the ONNX network, its torch weights and a `manifest.json` (DESIGN.md §5).

This module never imports torch: the car loads bundles. Everything that turns a camera image into a network
input reads its numbers from `BundleManifest.preprocessing`. Loading checks that every file the manifest
names exists, has the recorded size and sha256, so a missing, truncated or swapped file is a one-line
`BundleError` rather than a wrong decision on the road.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from vision.architectures import OUTPUT_KINDS, arch_spec
from vision.errors import VisionError
from vision.labels import LABEL_NAMES
from vision.preprocess import Preprocessing

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
ROLES = ("onnx", "onnx_int8", "weights", "ood")  # ood: vision.ood calibration (optional)
REQUIRED_ROLES = ("onnx", "weights")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = REPO_ROOT / "models" / "edge-sim"
_T = TypeVar("_T")


class BundleError(VisionError, ValueError):
    """A bundle that cannot be used: the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of a bundle, relative to the bundle folder."""

    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class BundleMetrics:
    """Numbers measured while making the bundle (None: not measured)."""

    val_loss: float | None = None
    val_accuracy: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    onnx_parity_max_abs: float | None = None
    parity_frames: int = 0
    fp32_accuracy_calib: float | None = None
    int8_accuracy_calib: float | None = None
    int8_accuracy_delta: float | None = None
    int8_max_abs_prob_diff: float | None = None
    int8_frames: int = 0
    int8_scope: str = ""


@dataclass(frozen=True, slots=True)
class TrainingDataSummary:
    """Where the training frames came from and how they were split (empty for an untrained bundle)."""

    source: str = ""
    n_total: int = 0
    n_go: int = 0
    n_stop: int = 0
    n_train: int = 0
    n_val: int = 0
    seed: int | None = None
    epochs: int | None = None
    augmentation: str = ""
    command: str = ""


def _from_mapping(cls: type[_T], data: object, where: str) -> _T:
    """Build a flat dataclass from a JSON object, ignoring unknown keys (newer writers), typed by `cls`."""
    if not isinstance(data, Mapping):
        raise BundleError(f"{where}: expected a JSON object; re-create the bundle with `car train`")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class BundleManifest:
    name: str
    arch: str
    preprocessing: Preprocessing
    files: Mapping[str, BundleFile]
    labels: tuple[str, ...] = LABEL_NAMES
    """The network's outputs, in order (GO, STOP for this project's networks; any names for imported ones)."""
    threshold: float = 0.5
    """STOP where P(STOP) > threshold."""
    threshold_note: str = ""
    """How the threshold was chosen (`car threshold ... --why`); empty: the default 0.5."""
    stop_label: str = "STOP"
    """The label whose probability is P(STOP) (e.g. JetBot's "blocked"); the car stops on it."""
    output: str = "sigmoid"
    """The last layer: "sigmoid" (independent probabilities) or "softmax" (exclusive; they sum to 1)."""
    metrics: BundleMetrics = field(default_factory=BundleMetrics)
    data: TrainingDataSummary = field(default_factory=TrainingDataSummary)
    created: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "format": self.format,
            "name": self.name,
            "arch": self.arch,
            "preprocessing": self.preprocessing.to_dict(),
            "labels": list(self.labels),
            "stop_label": self.stop_label,
            "output": self.output,
            "threshold": self.threshold,
            **({"threshold_note": self.threshold_note} if self.threshold_note else {}),
            "files": {role: asdict(f) for role, f in sorted(self.files.items())},
            "metrics": asdict(self.metrics),
            "data": asdict(self.data),
            "created": self.created,
            "versions": dict(sorted(self.versions.items())),
        }
        return json.dumps(doc, indent=2) + "\n"

    @property
    def stop_index(self) -> int:
        """Which network output is P(STOP)."""
        return self.labels.index(self.stop_label)

    def problems(self) -> list[str]:
        """Everything wrong with these facts together (empty: usable); checked when a manifest is read."""
        found: list[str] = []
        labels = self.labels
        if len(labels) < 2 or len(set(labels)) != len(labels) or not all(labels):
            found.append(f"labels {list(labels)} must be at least 2 distinct non-empty names")
        if self.stop_label not in labels:
            found.append(f"stop_label {self.stop_label!r} is not one of the labels {_short(labels)}")
        if self.output not in OUTPUT_KINDS:
            found.append(f"output {self.output!r} must be one of {list(OUTPUT_KINDS)}")
        if not 0.0 < self.threshold < 1.0:
            found.append(f"threshold={self.threshold} must lie strictly between 0 and 1")
        unknown = sorted(set(self.files) - set(ROLES))
        if unknown:
            found.append(f"unknown file role(s) {unknown}; allowed: {list(ROLES)}")
        try:
            spec = arch_spec(self.arch)
        except ValueError as exc:
            found.append(str(exc))
        else:
            found += spec.problems(labels, self.output, self.preprocessing.input_size)
        return found

    @classmethod
    def from_json(cls, text: str, where: str) -> BundleManifest:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{where}: not valid JSON ({exc}); the file is damaged, re-export it") from None
        if not isinstance(doc, dict):
            raise BundleError(f"{where}: expected a JSON object; re-export the bundle")
        missing = [k for k in ("name", "arch", "preprocessing", "files") if k not in doc]
        if missing:
            raise BundleError(f"{where}: missing key(s) {missing}; re-export the bundle with `car export`")
        fmt = int(doc.get("format", MANIFEST_FORMAT))
        if fmt > MANIFEST_FORMAT:
            raise BundleError(f"{where}: manifest format {fmt} is newer than this program; update it")
        try:
            prep = Preprocessing.from_dict(doc["preprocessing"])
            files = {
                str(role): _from_mapping(BundleFile, entry, f"{where} files.{role}")
                for role, entry in dict(doc["files"]).items()
            }
            labels = doc.get("labels", LABEL_NAMES)
            if not isinstance(labels, list | tuple):
                raise ValueError(f"labels must be a list of names, got {labels!r}")
            threshold = float(doc.get("threshold", 0.5))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: {exc}; fix the value or re-export the bundle") from None
        manifest = cls(
            name=str(doc["name"]),
            arch=str(doc["arch"]),
            preprocessing=prep,
            files=files,
            labels=tuple(str(x) for x in labels),
            threshold=threshold,
            threshold_note=str(doc.get("threshold_note", "")),
            stop_label=str(doc.get("stop_label", "STOP")),
            output=str(doc.get("output", "sigmoid")),
            metrics=_from_mapping(BundleMetrics, doc.get("metrics", {}), f"{where} metrics"),
            data=_from_mapping(TrainingDataSummary, doc.get("data", {}), f"{where} data"),
            created=str(doc.get("created", "")),
            versions={str(k): str(v) for k, v in dict(doc.get("versions", {})).items()},
            format=fmt,
        )
        found = manifest.problems()
        if found:
            raise BundleError(f"{where}: {'; '.join(found)}; fix the manifest or re-export the bundle")
        return manifest


def _short(labels: tuple[str, ...]) -> str:
    return str(list(labels)) if len(labels) <= 6 else f"[{', '.join(map(repr, labels[:5]))}, … {len(labels)}]"


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A loaded (and, by default, verified) bundle folder."""

    root: Path
    manifest: BundleManifest
    sha256: str
    """sha256 of manifest.json; it lists every file's sha256, so it identifies the whole bundle."""

    def path_of(self, role: str) -> Path:
        try:
            entry = self.manifest.files[role]
        except KeyError:
            hint = " (make it with `car export BUNDLE --int8 --calib DATA`)" if role == "onnx_int8" else ""
            raise BundleError(f"{self.root}: the bundle has no {role!r} file{hint}") from None
        return self.root / entry.path

    def has(self, role: str) -> bool:
        return role in self.manifest.files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(root: Path, filename: str) -> BundleFile:
    path = root / filename
    return BundleFile(path=filename, sha256=sha256_of(path), bytes=path.stat().st_size)


def _verify_file(root: Path, role: str, entry: BundleFile) -> None:
    path = root / entry.path
    if Path(entry.path).is_absolute() or ".." in Path(entry.path).parts:
        raise BundleError(f"{root / MANIFEST_NAME}: files.{role}.path={entry.path!r} must stay in the bundle")
    if not path.is_file():
        raise BundleError(f"{path}: missing {role} file of the bundle; copy the whole bundle folder again")
    size = path.stat().st_size
    if size != entry.bytes:
        what = "truncated" if size < entry.bytes else "larger than recorded"
        raise BundleError(
            f"{path}: {what} ({size} bytes, manifest says {entry.bytes}); copy the bundle folder again"
        )
    if sha256_of(path) != entry.sha256:
        raise BundleError(
            f"{path}: sha256 does not match the manifest (file replaced or corrupted); "
            "copy the bundle folder again or re-export it"
        )


def load_bundle(path: str | Path, verify: bool = True) -> ModelBundle:
    """Load a bundle from its folder (or its manifest.json); `verify` checks every file's size and hash."""
    path = Path(path)
    root = path.parent if path.name == MANIFEST_NAME else path
    manifest_path = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: no such model bundle folder; check the path (shipped: {DEFAULT_BUNDLE})")
    if not manifest_path.is_file():
        raise BundleError(
            f"{manifest_path}: missing; {root} is not a model bundle (make one with `car train`)"
        )
    raw = manifest_path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{manifest_path}: not UTF-8 text; the file is damaged, re-export it") from None
    manifest = BundleManifest.from_json(text, str(manifest_path))
    missing = [r for r in REQUIRED_ROLES if r not in manifest.files]
    if missing:
        raise BundleError(
            f"{manifest_path}: no {missing} file(s) listed; re-export the bundle with `car export`"
        )
    if verify:
        for role, entry in manifest.files.items():
            _verify_file(root, role, entry)
    return ModelBundle(root=root, manifest=manifest, sha256=hashlib.sha256(raw).hexdigest())


def write_manifest(root: Path, manifest: BundleManifest) -> ModelBundle:
    """Write manifest.json atomically (temp file + rename) and return the loaded, verified bundle."""
    target = root / MANIFEST_NAME
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    tmp.replace(target)
    return load_bundle(root)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def runtime_versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Versions of what made the bundle (torch's is passed in by the torch side)."""
    import numpy
    import onnx
    import onnxruntime

    from vision.provenance import code_version

    versions = {
        "gostop": code_version(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    versions.update(extra or {})
    return versions


def with_files(manifest: BundleManifest, **entries: BundleFile) -> BundleManifest:
    files = dict(manifest.files)
    files.update(entries)
    return replace(manifest, files=files)
