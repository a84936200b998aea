"""Labelling logged frames GO/STOP by hand: the queue, the labels on disk, undo, resume (no web stack here).

The output folder is an ordinary dataset folder in the published naming, so `car train DIR` and
`vision.datasets.load_dataset(DIR)` read it as it is:

- `{label}_{uuid}.jpg` (0 = GO, 1 = STOP): the frame the network saw (224×224), JPEG quality 95;
- `manifest.jsonl`: one line per labelled frame: `file`, `label`, `log` (the drive log's path), `seq` (its
  tick), `p_stop_logged` (what the car's network said then), `p_stop_model` (the `--model` suggestion, or
  null), `decision_logged`, `labelled_utc`, plus `scene`/`distance_m`/`lateral_m` (the simulator's ground
  truth when the log has it), `mask` (null), `seed` (0) and `index` (the line's number), so that
  `vision.datasets.read_manifest` reads it too;
- `dataset.json`: the command and code version that started it;
- `.labeller.jsonl` (hidden, ignored by the loaders): the journal of every action (labels, skips and
  undos). Running `car label` again on the same folder replays it and carries on where it stopped.

With `--model`, the model's P(STOP) is shown as a suggestion, and the frames where it disagrees with what
the car's network said at the time come first (then the ones closest to the threshold: the least certain);
without, frames come in log order.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from car.drivelog import DriveLogReader
from car.errors import CarError
from vision.imageio import encode_png, write_rgb
from vision.labels import GO, STOP

JOURNAL_NAME = ".labeller.jsonl"
MANIFEST_NAME = "manifest.jsonl"
PROVENANCE_NAME = "dataset.json"
LABELS = {"go": GO, "stop": STOP, "skip": None}


@dataclass(frozen=True, slots=True)
class LabelItem:
    """One logged frame in the queue."""

    log: str  # the drive log's resolved path
    seq: int
    p_stop_logged: float | None
    decision_logged: str
    network_logged: str  # what the car's network said then (P(STOP) vs the log's threshold): GO / STOP
    p_stop_model: float | None = None
    truth: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.log, self.seq)


@dataclass(frozen=True, slots=True)
class Entry:
    """One frame's outcome: a label with its file, or a skip (label None, no file)."""

    action: int
    log: str
    seq: int
    label: int | None
    file: str | None
    utc: str = ""  # when it was labelled

    def to_json(self) -> str:
        doc = {
            "action": self.action,
            "log": self.log,
            "seq": self.seq,
            "label": self.label,
            "file": self.file,
        }
        return json.dumps({**doc, "utc": self.utc})


def read_items(logs: Sequence[Path], every: int = 1) -> list[LabelItem]:
    """Every `every`-th frame of each log (ticks that had a frame), in log order."""
    items: list[LabelItem] = []
    for path in logs:
        with DriveLogReader(path) as log:
            threshold = log.meta.threshold
            framed = [r for r in log.records(images=False, masks=False) if r.frame_seq is not None]
            for record in framed[::every]:
                probs = record.decision.probs
                truth = None
                if record.truth is not None:
                    t = record.truth
                    truth = {"scene": t.scene, "distance_m": t.distance_m, "lateral_m": t.lateral_m}
                items.append(
                    LabelItem(
                        str(Path(path).resolve()),
                        record.seq,
                        None if probs is None else probs.stop,
                        record.decision.label_name,
                        record.decision.label_name if probs is None else _verdict(probs.stop, threshold),
                        truth=truth,
                    )
                )
    if not items:
        raise CarError(f"{', '.join(map(str, logs))}: no logged frames to label (were images dropped?)")
    return items


def _verdict(p_stop: float, threshold: float) -> str:
    return "STOP" if p_stop > threshold else "GO"


def suggest(items: list[LabelItem], bundle_path: Path, threads: int = 1) -> tuple[list[LabelItem], float]:
    """The model's P(STOP) for every item, and the items reordered: first where the model disagrees with
    what the car's network said then (a new model against the old one), then by closeness to the model's
    threshold (the least certain first)."""
    import dataclasses

    from vision.bundle import load_bundle
    from vision.detector import build_detector
    from vision.preprocess import fit_to_input, to_network_input

    bundle = load_bundle(bundle_path)
    detector = build_detector(bundle, "fp32", threads)
    prep = bundle.manifest.preprocessing
    threshold = bundle.manifest.threshold
    readers: dict[str, DriveLogReader] = {}
    out: list[LabelItem] = []
    try:
        for item in items:
            reader = readers.get(item.log) or readers.setdefault(item.log, DriveLogReader(item.log).open())
            rgb = reader[item.seq].rgb
            p = None
            if rgb is not None:
                batch = to_network_input(fit_to_input(rgb, prep.input_size), prep)
                p = float(np.asarray(detector.predict(batch))[0, 1])
            out.append(dataclasses.replace(item, p_stop_model=p))
    finally:
        for reader in readers.values():
            reader.close()

    def order(it: LabelItem) -> tuple[int, float]:
        if it.p_stop_model is None:
            return (2, 1.0)
        disagrees = _verdict(it.p_stop_model, threshold) != it.network_logged
        return (0 if disagrees else 1, abs(it.p_stop_model - threshold))

    return sorted(out, key=order), threshold


class LabelSession:
    """The queue, the labels so far, and the files: see the module docstring."""

    def __init__(self, items: list[LabelItem], out: Path, threshold: float | None = None) -> None:
        self.items = items
        self.out = Path(out)
        self.threshold = threshold
        self._index = {item.key: i for i, item in enumerate(items)}
        self.entries: dict[tuple[str, int], Entry] = {}
        self.actions: list[int] = []  # live action ids, oldest first
        self._next_action = 0
        self.out.mkdir(parents=True, exist_ok=True)
        self._replay()
        if not (self.out / PROVENANCE_NAME).exists():
            from vision.provenance import provenance

            _atomic_write(self.out / PROVENANCE_NAME, json.dumps(provenance(), indent=1) + "\n")

    # -- reading -------------------------------------------------------------------------------------------
    def rgb(self, index: int) -> np.ndarray:
        """The item's frame. The log is opened per read (about a millisecond): a SQLite connection may
        only be used by the thread that opened it, and the server answers on threads of its own."""
        item = self.items[index]
        with DriveLogReader(item.log) as log:
            rgb = log[item.seq].rgb
        if rgb is None:
            raise CarError(f"{item.log}: tick {item.seq} has no stored frame")
        return rgb

    def image_png(self, index: int) -> bytes:
        return encode_png(self.rgb(index))

    def label_of(self, index: int) -> int | str | None:
        entry = self.entries.get(self.items[index].key)
        if entry is None:
            return None
        return "skip" if entry.label is None else entry.label

    def counts(self) -> dict[str, int]:
        labels = [e.label for e in self.entries.values()]
        return {
            "go": labels.count(GO),
            "stop": labels.count(STOP),
            "skip": labels.count(None),
            "left": len(self.items) - len(labels),
            "total": len(self.items),
        }

    # -- writing -------------------------------------------------------------------------------------------
    def label(self, indices: Sequence[int], name: str) -> tuple[int, list[int]]:
        """Label (or skip) the given items as one action; items already done are left as they are.
        Returns the action id and the indices it changed."""
        if name not in LABELS:
            raise CarError(f"label {name!r}: expected one of {', '.join(LABELS)}")
        value = LABELS[name]
        for i in indices:
            if not 0 <= i < len(self.items):
                raise CarError(f"item {i}: there are {len(self.items)} items")
        action = self._next_action
        now = datetime.now(UTC).isoformat(timespec="seconds")
        changed: list[int] = []
        new: list[Entry] = []
        for i in dict.fromkeys(indices):
            item = self.items[i]
            if item.key in self.entries:
                continue
            file = None
            if value is not None:
                file = f"{value}_{uuid.uuid4()}.jpg"
                tmp = self.out / f".tmp-{file}"
                write_rgb(tmp, self.rgb(i), jpeg_quality=95)
                os.replace(tmp, self.out / file)
            new.append(Entry(action, item.log, item.seq, value, file, now))
            changed.append(i)
        if not new:
            return -1, []
        self._next_action += 1
        self._append("".join(e.to_json() + "\n" for e in new))
        for e in new:
            self.entries[(e.log, e.seq)] = e
        self.actions.append(action)
        self._write_manifest()
        return action, changed

    def undo(self) -> list[int]:
        """Take back the newest action (all of its items); returns their indices."""
        if not self.actions:
            return []
        action = self.actions.pop()
        gone = [e for e in self.entries.values() if e.action == action]
        for e in gone:
            del self.entries[(e.log, e.seq)]
            if e.file:
                (self.out / e.file).unlink(missing_ok=True)
        self._append(json.dumps({"undo": action}) + "\n")
        self._write_manifest()
        return sorted(self._index[(e.log, e.seq)] for e in gone if (e.log, e.seq) in self._index)

    def close(self) -> None:
        """Nothing stays open between calls; kept so callers can say when they are done."""

    # -- persistence ---------------------------------------------------------------------------------------
    def _append(self, text: str) -> None:
        with (self.out / JOURNAL_NAME).open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def _replay(self) -> None:
        journal = self.out / JOURNAL_NAME
        if not journal.exists():
            return
        entries: dict[int, list[Entry]] = {}
        for number, line in enumerate(journal.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if "undo" in doc:
                    entries.pop(int(doc["undo"]), None)
                    continue
                e = Entry(
                    int(doc["action"]),
                    str(doc["log"]),
                    int(doc["seq"]),
                    doc["label"],
                    doc["file"],
                    doc["utc"],
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise CarError(f"{journal}:{number}: not a labeller journal line ({exc})") from None
            entries.setdefault(e.action, []).append(e)
        for action in sorted(entries):
            live = [e for e in entries[action] if e.file is None or (self.out / e.file).exists()]
            for e in live:
                self.entries[(e.log, e.seq)] = e
            if live:
                self.actions.append(action)
        self._next_action = max(entries, default=-1) + 1

    def _write_manifest(self) -> None:
        by_key = {item.key: item for item in self.items}
        lines = []
        labelled = [e for e in self.entries.values() if e.label is not None]
        for index, e in enumerate(sorted(labelled, key=lambda e: e.action)):
            item = by_key.get((e.log, e.seq))
            truth = (item.truth if item is not None else None) or {}
            doc = {
                "file": e.file,
                "label": e.label,
                "log": e.log,
                "seq": e.seq,
                "p_stop_logged": None if item is None else item.p_stop_logged,
                "p_stop_model": None if item is None else item.p_stop_model,
                "decision_logged": None if item is None else item.decision_logged,
                "labelled_utc": e.utc,
                "scene": truth.get("scene", "drive_log"),
                "distance_m": truth.get("distance_m"),
                "lateral_m": truth.get("lateral_m"),
                "mask": None,
                "seed": 0,
                "index": index,
            }
            lines.append(json.dumps(doc, sort_keys=True) + "\n")
        _atomic_write(self.out / MANIFEST_NAME, "".join(lines))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
