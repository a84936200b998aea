"""`car log`: inspect a drive log (`info`) or export its frames as a dataset folder (`export`)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from car.drivelog import DriveLogReader, label_of
from car.errors import CarError
from vision.imageio import write_rgb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = sub.add_parser("info", help="summarise a drive log")
    info.add_argument("drive", type=Path, help="the drive log (.sqlite)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    export = sub.add_parser("export", help="write the log's frames as {label}_{id}.png/.jpg images")
    export.add_argument("drive", type=Path, help="the drive log (.sqlite)")
    export.add_argument("--frames", type=Path, required=True, metavar="DIR", help="output folder")
    export.add_argument(
        "--format", choices=("png", "jpg"), default="png", help="image format (png keeps frames lossless)"
    )


def log_info(path: Path) -> dict[str, object]:
    with DriveLogReader(path) as log:
        meta = log.meta
        decisions: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        faults: Counter[str] = Counter()
        truth: Counter[str] = Counter()
        frames = 0
        latencies: list[float] = []
        t_first = t_last = None
        for r in log.records(images=False):
            decisions[r.decision.label_name] += 1
            reasons[r.decision.reason.value] += 1
            faults.update(f.kind.value for f in r.faults)
            frames += r.frame_seq is not None
            if r.truth is not None:
                truth["GO" if r.truth.label == 0 else "STOP"] += 1
            if r.timings.latency is not None:
                latencies.append(r.timings.latency * 1000.0)
            t_first = r.t_tick if t_first is None else t_first
            t_last = r.t_tick
        summary = log.summary
        latencies.sort()

        def pct(q: float) -> float | None:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

        return {
            "log": str(path),
            "started_utc": meta.started_utc,
            "source": f"{meta.source_kind} ({meta.source_id})",
            "bundle": meta.bundle_name,
            "bundle_sha256": meta.bundle_sha256,
            "runtime": meta.runtime,
            "threshold": meta.threshold,
            "frame_format": meta.frame_format,
            "records": len(log),
            "frames": frames,
            "duration_s": None if t_first is None or t_last is None else t_last - t_first,
            "decisions": dict(decisions),
            "reasons": dict(reasons.most_common()),
            "faults": dict(faults),
            "ground_truth": dict(truth),
            "latency_p50_ms": pct(0.5),
            "latency_p99_ms": pct(0.99),
            "ended": None if summary is None else summary.end_reason,
            "ended_cleanly": summary is not None,
            "overruns": None if summary is None else summary.overruns,
            "dropped_images": None if summary is None else summary.dropped_images,
            "events": len(log.events()),
        }


def export_frames(path: Path, out: Path, suffix: str = "png") -> tuple[int, Counter[int]]:
    """Write each logged frame as `{label}_{drive}-{seq:06d}.{suffix}` (label: truth, else decision)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CarError(f"{out}: cannot create the folder ({exc}); choose another --frames") from None
    labels: Counter[int] = Counter()
    n = 0
    with DriveLogReader(path) as log:
        stem = path.stem.replace("_", "-")
        for record in log.records():
            if record.rgb is None:
                continue
            label = label_of(record)
            write_rgb(out / f"{label}_{stem}-{record.seq:06d}.{suffix}", record.rgb)
            labels[label] += 1
            n += 1
    return n, labels


def run(args: argparse.Namespace) -> int:
    if args.action == "info":
        info = log_info(args.drive)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            for key, value in info.items():
                print(f"{key:<16} {value}")
        return 0
    n, labels = export_frames(args.drive, args.frames, args.format)
    print(f"{args.frames}: wrote {n} frames (GO {labels[0]}, STOP {labels[1]})")
    return 0
