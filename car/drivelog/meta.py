"""The drive log's metadata types: what drove (`DriveMeta`, `BundleFile`) and how it ended (`RunSummary`),
and the one rule for "is this the bundle that drove?" (`bundle_matches`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from car.drivelog.schema import SCHEMA_VERSION
from car.timing import StageStat

if TYPE_CHECKING:
    from vision.bundle import ModelBundle


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class BundleFile:
    role: str
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class DriveMeta:
    """The run's metadata: which network drove (with every file's hash), on what, configured how."""

    started_utc: str
    source_kind: str
    source_id: str
    bundle_name: str
    bundle_path: str
    bundle_sha256: str
    runtime: str
    threshold: float
    frame_format: str
    config_json: str
    versions: tuple[tuple[str, str], ...]
    bundle_files: tuple[BundleFile, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def config(self) -> dict[str, object]:
        """The effective configuration as parsed JSON (for display and for re-running)."""
        parsed: dict[str, object] = json.loads(self.config_json)
        return parsed

    def file_sha256(self, role: str) -> str | None:
        return next((f.sha256 for f in self.bundle_files if f.role == role), None)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the loop reports when a drive ends; stored in `run_end` and `stage_summary`."""

    end_reason: str
    ticks: int
    frames: int
    stops: int
    drives: int
    overruns: int
    dropped_images: int
    dropped_records: int
    fault_counts: tuple[tuple[str, int], ...]
    stages: tuple[StageStat, ...]
    ended_utc: str = field(default_factory=utc_now)

    @property
    def faults(self) -> int:
        return sum(n for _, n in self.fault_counts)


def bundle_matches(meta: DriveMeta, bundle: ModelBundle) -> bool:
    """Whether `bundle` is the very bundle that drove the logged run: the same manifest digest.

    The manifest lists every file's sha256 and the preprocessing and threshold, so its digest identifies
    the whole bundle; the log stores it as `bundle_sha256`. `car replay` and `car explain` both ask this."""
    return bundle.sha256 == meta.bundle_sha256
