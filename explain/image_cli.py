"""`car explain-image IMAGE [IMAGE ...] --model BUNDLE --out DIR`: top-k classes, their maps, and what
masking half of each image does to them (the companion experiment), as an HTML report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from explain.background import DEFAULT_SPEC
from explain.explainers import DEFAULT_METHOD, EXPLAINERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files (any size)")
    parser.add_argument("--model", type=Path, required=True, metavar="BUNDLE", help="a model bundle folder")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="report folder")
    parser.add_argument(
        "--top", type=int, default=5, help="classes per image (default 5; at most the outputs)"
    )
    parser.add_argument(
        "--background",
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help="reference frames: sim:SEED, folder:PATH, log:PATH or a path; @N sets the count "
        f"(default {DEFAULT_SPEC}@100)",
    )
    parser.add_argument(
        "--method", choices=tuple(EXPLAINERS), default=DEFAULT_METHOD, help="attribution method"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise fill")
    parser.add_argument(
        "--json", action="store_true", help="print the top classes and the masking results as JSON"
    )


def run(args: argparse.Namespace) -> int:
    from explain.image_audit import ImageAuditOptions, image_audit_json, run_image_audit

    options = ImageAuditOptions(
        images=tuple(args.images),
        model=args.model,
        out=args.out,
        top=args.top,
        background=args.background,
        method=args.method,
        device=args.device,
        seed=args.seed,
    )
    result = run_image_audit(options)
    if args.json:
        print(json.dumps(image_audit_json(result), indent=2))
        return 0
    for finding in result.images:
        top = ", ".join(f"{c.label} {c.probability:.3f}" for c in finding.original.top)
        changed = [f"{m.half} {m.fill}" for m in finding.masked if m.top1_changed]
        print(f"{finding.path}: {top}; top-1 changes when masked: {', '.join(changed) or 'never'}")
    print(f"report: {result.report}")
    return 0
