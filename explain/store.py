"""Explanations stored beside the report, one file per frame, so an audit resumes where it stopped.

`OUT/attributions/fingerprint.json` says which network, background, outputs and method the files belong to;
`OUT/attributions/seq_<seq>.npz` holds one frame's values (outputs × C × H × W, float32), the explained
outputs, the expected values and the network's outputs. Each file is written to a temporary name and
renamed, so a run interrupted at any instant (Ctrl-C, kill) leaves only complete files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from explain.errors import ExplainError

FOLDER = "attributions"


@dataclass(frozen=True, slots=True)
class Fingerprint:
    weights_sha256: str
    background_sha256: str  # of the background frames' pixels
    background_ids_sha256: str
    outputs: tuple[int, ...]
    method: str = "deepshap"  # the `explain.explainers` method that made the values

    def to_json(self) -> str:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        return json.dumps(d, indent=2, sort_keys=True) + "\n"


def pixels_sha256(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def ids_sha256(ids: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredFrame:
    seq: int
    values: np.ndarray  # (outputs, C, H, W) float32
    outputs: tuple[int, ...]
    expected: np.ndarray  # (outputs,)
    model_output: np.ndarray  # (outputs,)


class AttributionStore:
    def __init__(self, out_dir: Path, fingerprint: Fingerprint) -> None:
        self.root = Path(out_dir) / FOLDER
        self.fingerprint = fingerprint
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / "fingerprint.json"
        if marker.is_file():
            try:
                found = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                found = None
            if isinstance(found, dict):
                found.setdefault("method", "deepshap")  # stores written before methods were recorded
            if found != json.loads(fingerprint.to_json()):
                raise ExplainError(
                    f"{self.root}: holds explanations of another network, background, outputs or method; "
                    "give another --out, or delete that folder to start over"
                )
        else:
            _atomic_write(marker, fingerprint.to_json().encode())

    def path(self, seq: int) -> Path:
        return self.root / f"seq_{seq:08d}.npz"

    def has(self, seq: int) -> bool:
        return self.path(seq).is_file()

    def save(self, frame: StoredFrame) -> None:
        tmp = self.path(frame.seq).with_suffix(".tmp.npz")
        np.savez(
            tmp,
            seq=np.int64(frame.seq),
            values=frame.values.astype(np.float32),
            outputs=np.asarray(frame.outputs, dtype=np.int64),
            expected=np.asarray(frame.expected, dtype=np.float64),
            model_output=np.asarray(frame.model_output, dtype=np.float64),
        )
        os.replace(tmp, self.path(frame.seq))

    def load(self, seq: int) -> StoredFrame:
        path = self.path(seq)
        try:
            with np.load(path) as z:
                return StoredFrame(
                    seq=int(z["seq"]),
                    values=z["values"],
                    outputs=tuple(int(o) for o in z["outputs"]),
                    expected=z["expected"],
                    model_output=z["model_output"],
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ExplainError(
                f"{path}: unreadable stored explanation ({exc}); delete it and run again"
            ) from None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
