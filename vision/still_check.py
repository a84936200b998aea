"""Still-frame error counts of model bundles side by side, on frames of the simulated world.

A closed-loop evaluation hides a network's per-frame misses behind the policy (the car sees dozens of frames
of each can, and a collision needs every one of the close ones missed), so two candidate models tie there
long before they tie frame by frame. These counts show the difference. They are for choosing between
candidates on diagnosis seeds; the seeds an evaluation reports are never used here.

    python -m vision.still_check --threshold 0.7 models/edge-sim runs/models/NAME [--scale 0.1] [--json]

Every model sees exactly the same frames (one render per frame). "Flat bright" counts the frames lit as the
shifted world's flat, over-exposed rooms (ambient ≥ 0.8, exposure ≥ 1.95), where `edge-sim-5` missed most.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from vision.bundle import load_bundle
from vision.detector import Detector, OnnxDetector, stop_decisions
from vision.errors import VisionError
from vision.preprocess import Preprocessing, to_network_input
from vision.sim import Lighting, Placement, World, WorldConfig, sample_scene

STOP, GO = 1, 0


@dataclass(frozen=True, slots=True)
class FrameSet:
    """Frames of one domain and some kinds; `label` is the label counted (STOP: missed, GO: false alarm)."""

    name: str
    domain: str
    kinds: tuple[str, ...]
    per_kind: int
    seed: int
    label: int
    ahead: tuple[float, float] | None = None


CLOSE = (0.12, 0.34)
"""Where a can is STOP and the car must already see it: inside the 0.35 m cutoff."""

DIAGNOSIS_SETS: tuple[FrameSet, ...] = (
    FrameSet("training world, close STOP frames missed", "default", ("can_path",), 1500, 16207, STOP, CLOSE),
    FrameSet("can_before_dark STOP frames missed", "default", ("can_before_dark",), 1500, 16208, STOP),
    FrameSet(
        "training world, GO frames called STOP",
        "default",
        ("dark_mat", "shadow", "dark_background", "dark_object_side", "can_side", "can_far", "empty"),
        800,
        16209,
        GO,
    ),
    FrameSet("shifted world, close STOP frames missed", "shifted", ("can_path",), 3000, 16206, STOP, CLOSE),
    FrameSet(
        "shifted world, GO frames called STOP",
        "shifted",
        ("can_far", "can_side", "empty", "dark_mat"),
        500,
        16204,
        GO,
    ),
)
"""Session 10's diagnosis sets (seeds 16204–16209, used for nothing reported)."""


def is_flat_bright(lighting: Lighting) -> bool:
    return lighting.ambient >= 0.8 and lighting.exposure >= 1.95


@dataclass(slots=True)
class SetCount:
    name: str
    frames: int = 0
    flat_bright: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    errors_flat_bright: dict[str, int] = field(default_factory=dict)


def _frames(frame_set: FrameSet, scale: float) -> Iterator[tuple[np.ndarray, Lighting]]:
    """The set's frames that carry its label, with their light (deterministic in the set's seed)."""
    config = WorldConfig(domain=frame_set.domain)
    rng = np.random.default_rng(frame_set.seed)
    placement = Placement(ahead=frame_set.ahead)
    for kind in frame_set.kinds:
        for i in range(max(1, round(frame_set.per_kind * scale))):
            scene = sample_scene(rng, kind, config, placement)
            rgb, truth = World(config, scene, seed=i).render()
            if truth.label == frame_set.label:
                yield rgb, scene.lighting


def count_errors(
    models: Sequence[tuple[str, Detector, Preprocessing]],
    threshold: float,
    frame_set: FrameSet,
    scale: float = 1.0,
) -> SetCount:
    """How many of the set's frames each model gets wrong at `threshold` (STOP above it, as the car)."""
    count = SetCount(frame_set.name)
    count.errors = {name: 0 for name, _, _ in models}
    count.errors_flat_bright = {name: 0 for name, _, _ in models}
    for rgb, lighting in _frames(frame_set, scale):
        flat = is_flat_bright(lighting)
        count.frames += 1
        count.flat_bright += flat
        for name, detector, prep in models:
            probs = detector.predict(to_network_input(rgb[None], prep))
            called_stop = bool(stop_decisions(probs, threshold)[0])
            wrong = called_stop != (frame_set.label == STOP)
            count.errors[name] += wrong
            count.errors_flat_bright[name] += wrong and flat
    return count


def _format(count: SetCount) -> str:
    parts = [f"{count.name}: {count.frames} frames ({count.flat_bright} flat bright)"]
    for name, errors in count.errors.items():
        share = 100.0 * errors / max(count.frames, 1)
        parts.append(
            f"  {name}: {errors} ({share:.2f} %), {count.errors_flat_bright[name]} of them flat bright"
        )
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vision.still_check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "bundles", nargs="+", help="model bundle folders, e.g. models/edge-sim runs/models/NAME"
    )
    parser.add_argument("--threshold", type=float, default=0.7, help="P(STOP) above it is STOP (0.7)")
    parser.add_argument("--scale", type=float, default=1.0, help="share of each set's frames (default 1)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    if not 0.0 < args.threshold < 1.0:
        parser.error(f"--threshold {args.threshold}: must lie between 0 and 1, e.g. 0.7")
    if not 0.0 < args.scale <= 1.0:
        parser.error(f"--scale {args.scale}: must lie in (0, 1], e.g. 0.1 for a quick look")
    try:
        models = []
        for path in args.bundles:
            bundle = load_bundle(path)
            models.append((path, OnnxDetector(bundle, threads=1), bundle.manifest.preprocessing))
    except VisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = [count_errors(models, args.threshold, s, args.scale) for s in DIAGNOSIS_SETS]
    if args.json:
        print(json.dumps({"threshold": args.threshold, "sets": [asdict(c) for c in counts]}, indent=1))
    else:
        for c in counts:
            print(_format(c), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
