"""`car replay`: re-run a network on a drive log's frames and check that the decisions reproduce."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("drive", type=Path, help="the drive log (.sqlite)")
    parser.add_argument(
        "--model", type=Path, default=None, help="replay with this bundle instead of the one that drove"
    )
    parser.add_argument("--runtime", choices=("fp32", "int8"), default=None, help="default: as driven")
    parser.add_argument("--video", type=Path, default=None, metavar="OUT.mp4", help="also render the drive")
    parser.add_argument("--json", action="store_true", help="print frames, agree, disagree as JSON")


def run(args: argparse.Namespace) -> int:
    from car.replay import render_video, replay

    result = replay(args.drive, args.model, args.runtime)
    if args.video is not None:
        n = render_video(args.drive, args.video)
        if not args.json:
            print(f"video: {args.video} ({n} frames)")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        note = "" if result.bundle_matches_log else " (NOT the bundle that drove)"
        print(f"{result.log_path}: replayed {result.frames} frames with {result.bundle_name}{note}")
        print(f"  decisions reproduced: {result.agree}/{result.frames}, differ: {result.disagree}")
        print(f"  max |P difference| against the log: {result.max_abs_prob_diff:.2e}")
        for d in result.disagreements[:10]:
            print(
                f"  seq {d.seq}: logged {d.logged}, replayed {d.replayed} (P(STOP) {d.replayed_p_stop:.3f})"
            )
    return 0 if result.disagree == 0 or not result.bundle_matches_log else 1
