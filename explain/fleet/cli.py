"""`car fleet audit LOGS... --out DIR`: many drive logs audited exactly as `car explain` audits one.

LOGS are drive logs, folders (searched for *.sqlite) or globs. Each drive's report goes to DIR/<drive>/
(the same files `car explain` writes); DIR gets the fleet report (`report.html`, `fleet.json`) and every
per-frame number as `frames.parquet`. `--engine ray` runs the drives on Ray (the `fleet` extra), locally or
on an existing cluster (`--address`). Heavy imports happen in `run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from car.engines import add_engine_arguments, engine_from_args
from car.errors import CarError
from explain.cli import add_audit_options, audit_values


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="audit many drive logs as `car explain` does; one fleet report")
    p.add_argument("logs", nargs="+", metavar="LOGS", help="drive logs (.sqlite), folders or globs")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="fleet report folder (resumable)")
    add_engine_arguments(p)
    p.add_argument("--workers", type=_positive_int, default=1, help="worker processes or Ray actors (1)")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch threads per worker (default 1)")
    add_audit_options(p)
    p.add_argument("--json", action="store_true", help="print the fleet's numbers as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_audit(sub)


def run(args: argparse.Namespace) -> int:
    from explain.fleet.run import audit_fleet
    from explain.fleet.work import AuditSettings

    if min(args.occlusion_frames, args.sanity_frames, args.faithfulness_frames) < 0:
        raise CarError("--occlusion-frames, --sanity-frames and --faithfulness-frames must be 0 or more")
    settings = AuditSettings(**audit_values(args))  # type: ignore[arg-type]
    result = audit_fleet(
        args.logs,
        args.out,
        settings,
        engine=engine_from_args(args),
        workers=args.workers,
        threads=args.threads,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(),
    )
    summary = result.summary_json()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"fleet audit: {summary['drives']} drives ({summary['resumed']} already done), "
            f"{summary['frames_explained']} frames explained on {summary['engine']} with "
            f"{summary['workers']} workers in {summary['wall_s']:.1f} s"
        )
        if summary["stop_focus_mean"] is not None:
            print(
                f"STOP attribution on the can {summary['stop_focus_mean']:.1%}; flagged {summary['flagged']}"
            )
        print(
            f"not reproduced {summary['not_reproduced']}, faults {summary['faults']}, "
            f"failed {summary['failed']}"
        )
        print(f"report: {result.report}")
    return 1 if result.failed else 0
