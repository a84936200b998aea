"""The fleet audit: find the logs, audit each on an engine (`car.engines`), write the fleet report."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from car.engines import EngineChoice, EngineOptions, map_items
from explain.fleet.drives import drive_names, find_logs
from explain.fleet.report import Group, fleet_document, write_fleet_report
from explain.fleet.work import AuditSettings, DriveJob, audit_drive, finished, worker_setup


@dataclass(frozen=True, slots=True)
class FleetResult:
    document: dict[str, Any]  # what fleet.json holds
    fleet: Group
    failed: int
    report: Path
    wall_s: float

    def summary_json(self) -> dict[str, Any]:
        """What `car fleet audit --json` prints."""
        run = self.document["run"]
        return {
            "drives": self.fleet.drives,
            "frames_explained": self.fleet.frames_explained,
            "stop_focus_mean": self.fleet.stop_focus_mean,
            "pointing_hit_rate": self.fleet.pointing_hit_rate,
            "flagged": self.fleet.flagged,
            "faults": self.fleet.faults,
            "not_reproduced": self.fleet.not_reproduced,
            "failed": self.failed,
            "resumed": sum(bool(d["resumed"]) for d in self.document["drives"]),
            "engine": run["engine"],
            "workers": run["workers"],
            "wall_s": round(self.wall_s, 3),
            "report": str(self.report),
        }


def plan(specs: Sequence[str], out: Path, settings: AuditSettings) -> list[DriveJob]:
    logs = find_logs(specs)
    return [
        DriveJob(log, name, out / name, settings) for log, name in zip(logs, drive_names(logs), strict=True)
    ]


def audit_fleet(
    specs: Sequence[str],
    out: Path,
    settings: AuditSettings,
    *,
    engine: EngineChoice = EngineChoice(),  # noqa: B008  (frozen, immutable)
    workers: int = 1,
    threads: int = 1,
    progress: bool = False,
) -> FleetResult:
    """Audit every drive of `specs` into out/<drive>/ and write the fleet report into `out`."""
    t0 = time.perf_counter()
    jobs = plan(specs, Path(out), settings)
    done = {job.name: finished(job) for job in jobs}
    todo = [job for job in jobs if done[job.name] is None]
    fresh = iter(
        map_items(
            engine,
            partial(worker_setup, threads),
            audit_drive,
            todo,
            EngineOptions(workers=workers, progress=progress, unit="drive"),
        )
        if todo
        else ()
    )
    results = [done[job.name] or next(fresh) for job in jobs]
    docs = [r for r in results if "error" not in r["summary"]]
    failed = [r["summary"] for r in results if "error" in r["summary"]]
    wall = time.perf_counter() - t0
    run = {
        "engine": engine.name,
        "address": engine.address,
        "workers": workers,
        "threads": threads,
        "wall_s": wall,
    }
    document = fleet_document(docs, failed, run)
    write_fleet_report(Path(out), document, docs)
    return FleetResult(document, Group.of(docs), len(failed), Path(out) / "report.html", wall)
