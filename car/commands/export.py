"""`car export BUNDLE [--int8 --calib DATA] [--graph-order ORDER]`: re-export a bundle's ONNX (and INT8)
from its torch weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle folder (e.g. models/edge-sim)")
    parser.add_argument("--int8", action="store_true", help="also write a static INT8 (QDQ) model")
    parser.add_argument(
        "--calib", type=Path, default=None, help="folder of real frames: parity + calibration"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=512,
        help="at most N calibration frames, a seeded random subset (default 512)",
    )
    parser.add_argument(
        "--int8-scope",
        choices=("linear", "all"),
        default="linear",
        help="operators to quantise: linear = fully connected only (default; fastest on AVX2 without "
        "VNNI), all = convolutions too (for CPUs with int8 dot-product instructions)",
    )
    parser.add_argument(
        "--graph-order",
        choices=("winograd", "relu-before-pool", "as-trained"),
        default=None,
        help="ONNX graph form (all exact, parity-checked against the torch network; default: the "
        "architecture's, winograd for seed/edge, as-trained for torchvision networks): winograd = "
        "relu-before-pool plus each 3×3 conv stage with ≥ 32 input channels as Winograd F(4×4,3×3) with "
        "the max-pooling folded in; relu-before-pool = each MaxPool→ReLU exported as ReLU→MaxPool (lets "
        "onnxruntime fuse ReLU into the convolution); as-trained = the published order",
    )
    parser.add_argument("--json", action="store_true", help="print the manifest's metrics as JSON")


def run(args: argparse.Namespace) -> int:
    from vision.bundle import load_bundle
    from vision.errors import VisionError
    from vision.export import load_labelled_frames, onnx_graph_order, reexport_bundle

    if args.int8 and args.calib is None:
        raise VisionError("--int8 needs --calib DATA: a folder of real frames to calibrate on")
    bundle = load_bundle(args.bundle)
    if bundle.has("onnx_int8") and not args.int8:
        print(
            f"car export: note: {bundle.root} loses its INT8 model; pass --int8 --calib DATA to rebuild it",
            file=sys.stderr,
        )
    calib = None
    if args.calib is not None:
        size = bundle.manifest.preprocessing.input_size
        calib = load_labelled_frames(args.calib, size, args.limit, seed=0, progress=not args.json)
    bundle = reexport_bundle(
        bundle,
        calib,
        int8=args.int8,
        int8_scope=args.int8_scope,
        graph_order=args.graph_order,
    )
    m = bundle.manifest.metrics
    order = onnx_graph_order(bundle.path_of("onnx"))
    if args.json:
        from dataclasses import asdict

        doc = {"bundle": str(bundle.root), "sha256": bundle.sha256, "graph_order": order, **asdict(m)}
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"wrote {bundle.path_of('onnx')} ({bundle.manifest.files['onnx'].bytes / 1e6:.2f} MB), "
        f"graph order {order}, "
        f"torch↔onnxruntime max |Δprob| {m.onnx_parity_max_abs:.1e} on {m.parity_frames} frames"
    )
    if bundle.has("onnx_int8"):
        line = (
            f"wrote {bundle.path_of('onnx_int8')} ({bundle.manifest.files['onnx_int8'].bytes / 1e6:.2f} MB), "
            f"max |Δprob| vs fp32 {m.int8_max_abs_prob_diff:.3f} on {m.int8_frames} frames"
        )
        if m.int8_accuracy_delta is not None:
            line += (
                f"; accuracy fp32 {m.fp32_accuracy_calib:.4f} → int8 {m.int8_accuracy_calib:.4f} "
                f"({m.int8_accuracy_delta:+.4f})"
            )
        print(line)
    return 0
