"""`car explain DRIVE --out DIR [--method NAME]`: an attribution audit of a drive log, with an HTML report.

Heavy imports (torch, shap, matplotlib) happen inside `run`, so `car --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from explain.background import DEFAULT_SPEC
from explain.explainers import DEFAULT_METHOD, EXPLAINERS

AUDIT_OPTIONS = (
    "select",
    "background",
    "method",
    "device",
    "model",
    "horizon",
    "occlusion_frames",
    "sanity_frames",
    "faithfulness_frames",
    "seed",
    "outputs",
)
"""The options `add_audit_options` adds: `car explain`'s and `car fleet audit`'s, read by `audit_values`."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("drive", type=Path, metavar="DRIVE", help="the drive log (.sqlite) `car drive` wrote")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder (resumable)")
    add_audit_options(parser)
    parser.add_argument("--json", action="store_true", help="print the audit's numbers as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def audit_values(args: argparse.Namespace) -> dict[str, object]:
    """The audit options of parsed arguments, by AuditOptions field name."""
    return {name: getattr(args, name) for name in AUDIT_OPTIONS}


def add_audit_options(parser: argparse.ArgumentParser) -> None:
    """How to audit a drive: the same options for one drive (`car explain`) and a fleet of them."""
    parser.add_argument(
        "--select",
        default="auto",
        metavar="all|auto|changes|stride:K|frames:A-B",
        help="frames to explain; auto (default): decision changes, small margins, faults, a stride "
        "sample, at most 10%% of the frames",
    )
    parser.add_argument(
        "--background",
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help="reference frames: sim:SEED, folder:PATH, log:PATH or a path; @N sets the count "
        f"(default {DEFAULT_SPEC}@100)",
    )
    parser.add_argument(
        "--method",
        choices=tuple(EXPLAINERS),
        default=DEFAULT_METHOD,
        help=f"attribution method (default {DEFAULT_METHOD}); the report rates every method's faithfulness",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="BUNDLE",
        help="explain this bundle even if it is not the network that drove (the report says so first)",
    )
    parser.add_argument(
        "--horizon", type=float, default=0.35, help="horizon row as a fraction of the height (default 0.35)"
    )
    parser.add_argument("--occlusion-frames", type=int, default=6, help="frames in the occlusion check")
    parser.add_argument(
        "--sanity-frames", type=int, default=2, help="frames in the randomisation check (0: off)"
    )
    parser.add_argument(
        "--faithfulness-frames",
        type=int,
        default=4,
        help="frames in the deletion-curve faithfulness check of every method (0: off)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the noise occlusion and the randomisation"
    )
    parser.add_argument(
        "--outputs",
        choices=("both", "stop"),
        default="both",
        help="explain both outputs (default) or only STOP: half the time, no GO maps in the report",
    )


def run(args: argparse.Namespace) -> int:
    from explain.audit import AuditOptions, audit_numbers_json, run_audit

    options = AuditOptions(
        log=args.drive,
        out=args.out,
        progress=not args.no_progress and sys.stderr.isatty(),
        **audit_values(args),  # type: ignore[arg-type]
    )
    result = run_audit(options)
    if args.json:
        print(json.dumps(audit_numbers_json(result), indent=2))
        return 0
    n = result.numbers
    print(result.model.first_line)
    print(
        f"explained {n.frames_explained} of {n.frames_total} frames with {n.method} in {n.seconds:.1f} s; "
        f"flagged {n.flagged}"
    )
    on_can, area, hits = (
        n.metrics.get(k) for k in ("stop_focus_mean", "random_focus_mean", "pointing_hit_rate")
    )
    if on_can is not None and area is not None and hits is not None:
        print(
            f"STOP attribution on the can {on_can:.1%} (random {area:.1%}), pointing game {hits:.1%} "
            f"over {n.metrics.get('frames_with_can')} frames with the can in view"
        )
    if n.faithfulness_by_method:
        ranked = sorted(n.faithfulness_by_method.items(), key=lambda kv: -kv[1])
        print("faithfulness (deletion gap): " + ", ".join(f"{m} {v:.3f}" for m, v in ranked))
    print(f"report: {result.report}")
    return 0
