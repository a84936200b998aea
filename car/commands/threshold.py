"""`car threshold BUNDLE [VALUE --why TEXT]`: show or set a bundle's STOP threshold (in its manifest).

The threshold belongs to the model: it is chosen for a network (on closed-loop tuning seeds, see the README's
"Safety at scale"), travels in its manifest, and every user of the bundle (`car drive`, `car sim eval`,
`car replay`, the audit) reads it from there unless a config sets `policy.threshold`. Setting it rewrites the
manifest atomically, so the bundle's digest changes: drive logs recorded with the old manifest then need
`--model` to be replayed or audited, as after any change to a bundle.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from car.errors import CarError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="the model bundle folder, e.g. models/edge-sim")
    parser.add_argument("value", type=float, nargs="?", default=None, help="the new threshold, in (0, 1)")
    parser.add_argument(
        "--why",
        default=None,
        help="how the value was chosen (kept in the manifest as threshold_note); required with a value",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from vision.bundle import BundleError, load_bundle, write_manifest

    try:
        bundle = load_bundle(args.bundle)
    except (BundleError, OSError) as exc:
        raise CarError(f"{args.bundle}: {exc}") from None
    before = bundle.manifest.threshold
    if args.why and args.value is None:
        raise CarError("--why TEXT goes with a new threshold: car threshold BUNDLE VALUE --why TEXT")
    if args.value is not None:
        if not 0.0 < args.value < 1.0:
            raise CarError(
                f"threshold {args.value}: must lie strictly between 0 and 1 (P(STOP) above it stops)"
            )
        if not args.why:
            raise CarError("car threshold BUNDLE VALUE needs --why TEXT: say which seeds or frames chose it")
        manifest = replace(bundle.manifest, threshold=args.value, threshold_note=args.why)
        bundle = write_manifest(bundle.root, manifest)
    result = {
        "bundle": str(bundle.root),
        "threshold": bundle.manifest.threshold,
        "previous": before,
        "note": bundle.manifest.threshold_note,
        "sha256": bundle.sha256,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.value is None:
        note = f" ({bundle.manifest.threshold_note})" if bundle.manifest.threshold_note else ""
        print(f"{bundle.root}: threshold {bundle.manifest.threshold}{note}")
    else:
        digest = bundle.sha256[:12]
        print(f"{bundle.root}: threshold {before} -> {bundle.manifest.threshold} (manifest sha256 {digest}…)")
    return 0
