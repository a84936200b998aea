"""One drive's audit inside a worker: exactly `car explain`'s, resumable per drive and per frame.

A worker (a pool process or a Ray actor) is set up once: torch limited to its threads, the audit's modules
imported, and a cache of background files so the reference frames are rendered once per worker rather than
once per drive (each drive's folder gets a copy of the first `background.npz` the audit wrote for the same
spec; the audit checks it and rebuilds it if it does not fit). The twin itself is loaded by the audit's
entry point per drive (it must verify each drive's bundle anyway).

A finished drive leaves `DIR/<drive>/fleet_drive.json` (its numbers, per-frame rows and worst frames) keyed
by the log's identity and the audit settings; a second run returns it without auditing again. An
interrupted drive resumes from the frames its audit stored. Every start appends one line to
`fleet_attempts.jsonl` (host, pid), so a retried drive shows where each attempt ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from car.errors import CarError
from explain.errors import ExplainError
from explain.fleet import adapter

if TYPE_CHECKING:
    from explain.audit import AuditResult

DONE_NAME = "fleet_drive.json"
ATTEMPTS_NAME = "fleet_attempts.jsonl"
WORST_FOLDER = "fleet_worst"
WORST_PER_DRIVE = 4  # candidate worst frames drawn by each worker (the fleet report keeps the worst of all)
FORMAT = 1


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """`car explain`'s options, the same for every drive of the fleet (see `car explain --help`)."""

    select: str = "auto"
    background: str = "sim:0"
    device: str = "cpu"
    model: str | Path | None = None
    horizon: float = 0.35
    occlusion_frames: int = 6
    sanity_frames: int = 2
    seed: int = 0
    outputs: str = "both"
    method: str = "deepshap"
    faithfulness_frames: int = 4

    def audit_values(self, log: Path, out: Path) -> dict[str, Any]:
        values = asdict(self)
        values.update(
            log=log, out=out, progress=False, model=None if self.model is None else Path(self.model)
        )
        return values


@dataclass(frozen=True, slots=True)
class DriveJob:
    log: Path
    name: str
    out: Path  # the drive's report folder, DIR/<name>
    settings: AuditSettings

    def key(self) -> str:
        """The log's identity (path, size, modification time) and the settings: what a finished result
        must match to be reused."""
        stat = self.log.stat()
        ident = [str(self.log.resolve()), stat.st_size, stat.st_mtime_ns, asdict(self.settings), FORMAT]
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


@dataclass(slots=True)
class WorkerState:
    threads: int
    backgrounds: dict[str, Path] = field(default_factory=dict)  # spec → a background.npz the audit wrote


def worker_setup(threads: int = 1) -> WorkerState:
    """Once per worker: torch at `threads` threads, the audit's modules imported."""
    import torch

    torch.set_num_threads(threads)
    import explain.audit  # noqa: F401  (imported once per worker, not once per drive)

    return WorkerState(threads)


def _log_attempt(job: DriveJob) -> None:
    job.out.mkdir(parents=True, exist_ok=True)
    line = {"host": socket.gethostname(), "pid": os.getpid(), "utc": time.time()}
    with (job.out / ATTEMPTS_NAME).open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def _reuse_background(state: WorkerState, job: DriveJob) -> None:
    target = job.out / "background.npz"
    source = state.backgrounds.get(job.settings.background)
    if source is not None and source.is_file() and not target.exists():
        shutil.copyfile(source, target)


def _remember_background(state: WorkerState, job: DriveJob) -> None:
    written = job.out / "background.npz"
    if written.is_file():
        state.backgrounds.setdefault(job.settings.background, written)


def frame_rows(result: AuditResult, drive: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every explained frame's numbers, one flat row each (the Parquet table's rows)."""
    rows = []
    for f in result.frames:
        rows.append(
            {
                "drive": drive,
                "bundle_name": summary["bundle_name"],
                "bundle_sha256": summary["bundle_sha256"],
                "seq": f.seq,
                "t": f.t,
                "p_stop": f.p_stop,
                "p_go": f.p_go,
                "decision": f.decision,
                "truth_label": f.truth_label,
                "faults": ",".join(f.faults),
                **adapter.frame_metrics(f),
                "flagged": bool(f.flagged),
            }
        )
    return rows


def drive_summary(result: AuditResult, job: DriveJob) -> dict[str, Any]:
    from car.drivelog import DriveLogReader

    with DriveLogReader(job.log) as log:
        started = log.meta.started_utc
    model = result.model
    return {
        "drive": job.name,
        "log": str(job.log),
        "report": str(job.out / "report.html"),
        "started_utc": started,
        "bundle_name": model.bundle_name,
        "bundle_sha256": model.weights_sha256,
        "threshold": model.threshold,
        "numbers": adapter.numbers_json(result),
        "faults": sum(1 for t in result.ticks if t.faults),
        "agree": model.agree,
        "compared": model.compared,
        "not_reproduced": model.compared - model.agree,
        "reused_frames": result.reused,
    }


def badness(row: dict[str, Any], threshold: float) -> float | None:
    """How badly a STOP of the network rests off the can (1: nothing on it); None for GO frames. Without
    ground truth, the share above the horizon stands in."""
    if row["p_stop"] < threshold:
        return None
    share = row["stop_on_can"] if row["stop_on_can"] is not None else row["below_horizon"]
    return None if share is None else 1.0 + float(row["flagged"]) - float(share)


def draw_worst(job: DriveJob, rows: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """The drive's worst STOP frames as `[frame | STOP map | GO map]` PNGs in DIR/<drive>/fleet_worst/."""
    scored = [(b, r) for r in rows if (b := badness(r, threshold)) is not None]
    scored.sort(key=lambda item: -item[0])
    worst = []
    for score, row in scored[:WORST_PER_DRIVE]:
        png = _draw(job, int(row["seq"]))
        on_can = row["stop_on_can"] is not None
        worst.append(
            {
                "drive": job.name,
                "seq": row["seq"],
                "badness": score,
                "share": row["stop_on_can"] if on_can else row["below_horizon"],
                "share_of": "on the can" if on_can else "below the horizon",
                "flagged": bool(row["flagged"]),
                "p_stop": row["p_stop"],
                "png": png,
            }
        )
    return worst


def _draw(job: DriveJob, seq: int) -> str | None:
    """One frame's overlay from the audit's stored values (None if the store's layout is not readable)."""
    from car.drivelog import DriveLogReader
    from explain.report import overlay
    from explain.store import StoredFrame
    from vision.bundle import load_bundle
    from vision.preprocess import fit_to_input

    stored_path = job.out / "attributions" / f"seq_{seq:08d}.npz"
    try:
        with np.load(stored_path) as z:
            stored = StoredFrame(
                int(z["seq"]),
                z["values"],
                tuple(int(o) for o in z["outputs"]),
                z["expected"],
                z["model_output"],
            )
        with DriveLogReader(job.log) as log:
            rgb = log[seq].rgb
            bundle_path = Path(job.settings.model) if job.settings.model else Path(log.meta.bundle_path)
        size = load_bundle(bundle_path).manifest.preprocessing.input_size
        assert rgb is not None
        picture = overlay(fit_to_input(rgb, size), stored)
    except (OSError, KeyError, ValueError, TypeError, ExplainError):
        return None
    path = job.out / WORST_FOLDER / f"seq_{seq:08d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(picture.png)
    return str(path)


def finished(job: DriveJob, key: str | None = None) -> dict[str, Any] | None:
    """The drive's finished result, if one for this log and these settings is on disk."""
    path = job.out / DONE_NAME
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return {**doc, "resumed": True} if doc.get("key") == (key or job.key()) else None


def audit_drive(state: WorkerState, job: DriveJob) -> dict[str, Any]:
    """Audit one drive (or return its finished result); failures are returned, not raised, so one bad log
    does not stop the fleet."""
    key = job.key()
    done = finished(job, key)
    if done is not None:
        return done
    _log_attempt(job)
    _reuse_background(state, job)
    try:
        result = adapter.run(adapter.make_options(job.settings.audit_values(job.log, job.out)))
    except (ExplainError, CarError, OSError, ValueError) as exc:
        return {"key": key, "summary": {"drive": job.name, "log": str(job.log), "error": str(exc)}}
    _remember_background(state, job)
    summary = drive_summary(result, job)
    rows = frame_rows(result, job.name, summary)
    doc = {
        "key": key,
        "summary": summary,
        "frames": rows,
        "worst": draw_worst(job, rows, summary["threshold"]),
    }
    tmp = job.out / (DONE_NAME + ".tmp")
    tmp.write_text(json.dumps(doc, default=float), encoding="utf-8")
    tmp.replace(job.out / DONE_NAME)
    return {**doc, "resumed": False}
