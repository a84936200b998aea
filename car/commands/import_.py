"""`car import --arch NAME --weights FILE --labels L1,L2[,...] --stop-label L --output softmax|sigmoid
--out models/NAME [--mean M M M --std S S S --size 224] [--calib DATA] [--json]`: a torchvision classifier's
state_dict (e.g. a JetBot `best_model.pth`) becomes an ordinary bundle (`vision.importer`).

JetBot's collision-avoidance model, in one command:

    car import --arch resnet18 --weights best_model.pth --labels blocked,free --stop-label blocked \\
        --output softmax --out models/jetbot
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from vision.architectures import OUTPUT_KINDS, names
from vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, choices=names("torchvision"), help="torchvision network")
    parser.add_argument(
        "--weights", type=Path, required=True, help="torch state_dict file (torch.save(model.state_dict()))"
    )
    parser.add_argument(
        "--labels",
        required=True,
        help="output names in the network's order, comma-separated (JetBot: blocked,free), or 'imagenet' "
        "for torchvision's 1000 ImageNet class names",
    )
    parser.add_argument("--stop-label", required=True, help="the label that means STOP (JetBot: blocked)")
    parser.add_argument(
        "--output", required=True, choices=OUTPUT_KINDS, help="last layer: softmax (exclusive) or sigmoid"
    )
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/NAME")
    parser.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN, help="RGB mean (ImageNet's)")
    parser.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD, help="RGB std (ImageNet's)")
    parser.add_argument("--size", type=int, default=INPUT_SIZE, help=f"input side (default {INPUT_SIZE})")
    parser.add_argument("--threshold", type=float, default=0.5, help="STOP where P(stop label) > this")
    parser.add_argument(
        "--calib",
        type=Path,
        default=None,
        help="folder of real GO/STOP frames: parity is checked on them and the INT8 model is calibrated "
        "on them; without it parity uses 8 random images and no INT8 model is written",
    )
    parser.add_argument("--limit", type=int, default=512, help="at most N --calib frames (seeded subset)")
    parser.add_argument(
        "--int8-scope",
        choices=("linear", "all"),
        default="linear",
        help="INT8 operators: linear = fully connected only (default; for a torchvision CNN only its head), "
        "all = convolutions too (for CPUs with int8 dot-product instructions)",
    )
    parser.add_argument("--json", action="store_true", help="print the bundle's facts as JSON")


def run(args: argparse.Namespace) -> int:
    from vision.importer import ImportSpec, import_bundle, parse_labels
    from vision.preprocess import Preprocessing

    spec = ImportSpec(
        arch=args.arch,
        weights=args.weights,
        labels=parse_labels(args.labels),
        stop_label=args.stop_label,
        output=args.output,
        prep=Preprocessing(args.size, tuple(args.mean), tuple(args.std)),
        threshold=args.threshold,
    )
    command = (
        "car import " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("import") + 1 :])
        if ("import" in sys.argv)
        else ""
    )
    bundle = import_bundle(
        spec, args.out, args.calib, limit=args.limit, command=command, int8_scope=args.int8_scope
    )
    m = bundle.manifest
    int8_note = (
        f"INT8 calibrated on {m.metrics.int8_frames} frames of {args.calib}"
        if bundle.has("onnx_int8")
        else "no INT8 model (pass --calib DATA, a folder of real frames, to calibrate one)"
    )
    if args.json:
        doc = {
            "bundle": str(bundle.root),
            "sha256": bundle.sha256,
            "arch": m.arch,
            "labels": len(m.labels) if len(m.labels) > 20 else list(m.labels),
            "stop_label": m.stop_label,
            "output": m.output,
            "input_size": m.preprocessing.input_size,
            "onnx_parity_max_abs": m.metrics.onnx_parity_max_abs,
            "parity_frames": m.metrics.parity_frames,
            "int8": bundle.has("onnx_int8"),
            "int8_max_abs_prob_diff": m.metrics.int8_max_abs_prob_diff,
            "note": int8_note,
        }
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"wrote {bundle.root} (arch {m.arch}, {len(m.labels)} labels, STOP = {m.stop_label!r}, {m.output}, "
        f"{m.preprocessing.input_size}×{m.preprocessing.input_size}; torch↔onnxruntime max |Δprob| "
        f"{m.metrics.onnx_parity_max_abs:.1e} on {m.metrics.parity_frames} frames; {int8_note})"
    )
    return 0
