"""`car camera`: which cameras this computer has, and how one of them (or a pipeline, or a file) performs.

`car camera list` asks every /dev/video* node what it offers (V4L2: formats, sizes, rates). `car camera
check DEVICE` reads one source for a few seconds the way `car drive` would and reports delivered fps,
frame-interval jitter, capture-to-read latency, dropped and duplicated frames, brightness stability, saves a
snapshot and a short clip, and prints the `source:` block to put in configs/car.yaml.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from car.config import CarConfig, with_overrides
from vision.sources.registry import CAMERA_BACKENDS

LATE_S = CarConfig().loop.max_frame_age_s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="V4L2 video devices with their formats, sizes and rates")
    listing.add_argument("--json", action="store_true", help="print the devices as JSON")
    check = sub.add_parser("check", help="measure one camera, pipeline or video file")
    check.add_argument(
        "device", help="index (0), /dev/videoN, URL, video file, or (with --backend gst) a pipeline"
    )
    check.add_argument("--backend", choices=tuple(CAMERA_BACKENDS), default="any", help="how to read it")
    check.add_argument("--seconds", type=float, default=5.0, help="how long to read (default 5)")
    check.add_argument("--width", type=int, default=0, help="requested width (OpenCV/picamera2)")
    check.add_argument("--height", type=int, default=0, help="requested height (OpenCV/picamera2)")
    check.add_argument("--fps", type=float, default=30.0, help="requested rate (OpenCV/picamera2)")
    check.add_argument(
        "--lock-exposure-after-s",
        type=float,
        default=0.0,
        help="lock exposure (and white balance) after this",
    )
    check.add_argument("--out", type=Path, default=Path("runs/camera"), help="snapshot and clip go here")
    check.add_argument("--json", action="store_true", help="print the measurements as one JSON object")


def list_devices(as_json: bool) -> int:
    from dataclasses import asdict

    from vision.sources.v4l2 import list_devices as v4l2_devices

    devices = v4l2_devices()
    if as_json:
        print(json.dumps([asdict(d) for d in devices], indent=1))
        return 0
    if not devices:
        print(
            "no V4L2 video devices (/dev/video*). A Raspberry Pi camera: `rpicam-hello --list-cameras`, then "
            "source.backend: picamera2 (or gst with libcamerasrc); Jetson CSI: gst with nvarguscamerasrc"
        )
        return 0
    for d in devices:
        print(f"{d.path}: {d.card} ({d.driver}, {d.bus})")
        for f in d.formats:
            sizes = ", ".join(
                f"{s.width}x{s.height}" + (f"@{'/'.join(f'{r:g}' for r in s.fps)}" if s.fps else "")
                for s in f.sizes
            )
            print(f"  {f.fourcc:<5} {f.description}: {sizes or 'sizes not listed'}")
    return 0


def _config_for(args: argparse.Namespace) -> CarConfig:
    settings = [
        "source.kind=camera",
        f"source.backend={args.backend}",
        f"source.device={args.device}",
    ]
    if "width" not in _unread(args.backend):
        settings += [f"source.width={args.width}", f"source.height={args.height}", f"source.fps={args.fps}"]
        if args.lock_exposure_after_s > 0:
            settings += [
                f"source.lock_exposure_after_s={args.lock_exposure_after_s}",
                "source.lock_white_balance=true",
            ]
    return with_overrides(CarConfig(), settings, origin="car camera check")


def _unread(backend: str) -> tuple[str, ...]:
    from vision.sources.registry import unread_keys

    return unread_keys(backend)


def suggestion(config: CarConfig) -> str:
    """The source block for configs/car.yaml."""
    s = config.source
    lines = ["source:", "  kind: camera", f"  device: {json.dumps(s.device)}", f"  backend: {s.backend}"]
    if "width" not in _unread(s.backend):
        lines += [f"  width: {s.width}", f"  height: {s.height}", f"  fps: {s.fps:g}"]
        lines.append("  lock_exposure_after_s: 2.0   # once auto exposure has settled (if the driver allows)")
    return "\n".join(lines)


def warnings_for(result: dict[str, object]) -> list[str]:
    info = result.get("info")
    listed = info.get("warnings", []) if isinstance(info, dict) else []
    notes = [str(w) for w in listed]
    fps, p99 = float(result["fps"]), float(result["latency_p99_ms"])  # type: ignore[arg-type]
    if fps and fps < 25:
        notes.append(
            f"{fps:.1f} fps: the loop runs at 30 Hz by default; set loop.rate_hz to {math.floor(fps)}"
        )
    if p99 / 1000.0 > LATE_S:
        notes.append(
            f"latency p99 {p99:.0f} ms exceeds loop.max_frame_age_s {LATE_S * 1000:.0f} ms: stale_frame STOPs"
        )
    if float(result["brightness_std"]) > 8.0:  # type: ignore[arg-type]
        notes.append("brightness moves a lot: set source.lock_exposure_after_s (and lock_white_balance)")
    return notes


def check(args: argparse.Namespace) -> int:
    from vision.camera_check import check_source
    from vision.sources.registry import open_camera

    config = _config_for(args)
    source = open_camera(config.source.backend, config.source.camera_options())
    result = check_source(source, args.seconds, args.out).to_dict()
    result["backend"], result["device"] = args.backend, args.device
    result["warnings"] = warnings_for(result)
    result["config"] = suggestion(config)
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    print(
        f"{args.device} ({args.backend}): {result['frames']} frames, {result['width']}x{result['height']} "
        f"{result['format'] or '?'}\n"
        f"  delivered {result['fps']} fps; interval p50 {result['interval_p50_ms']} ms, p99 "
        f"{result['interval_p99_ms']} ms, jitter {result['jitter_ms']} ms\n"
        f"  capture -> read latency p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms\n"
        f"  dropped {result['dropped']}, duplicated {result['duplicated']}; brightness "
        f"{result['brightness_mean']} ± {result['brightness_std']}\n"
        f"  snapshot {result['snapshot']}, clip {result['clip']}"
        + (f"\n  ended early: {result['ended']}" if result["ended"] else "")
    )
    for note in result["warnings"]:  # type: ignore[attr-defined]
        print(f"  note: {note}")
    print(f"for configs/car.yaml:\n{result['config']}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return list_devices(args.json)
    return check(args)
