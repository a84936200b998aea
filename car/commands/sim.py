"""`car sim`: the simulated world's tools.

- `car sim dataset --out DIR --n N --seed S`: N frames as `{label}_{uuid}.jpg`, masks, manifest, summary.
- `car sim demo [--out runs/demo]`: a short drive towards a can (stopped by ground truth), MP4 + sheet.
- `car sim eval ...`: closed-loop evaluation; options in `car.commands.sim_eval`, the work in `car.sim_eval`
  (both loaded lazily).
- `car sim collect ...`: closed-loop training frames (DAgger-style); options in
  `car.commands.sim_collect`, code in `car.sim_collect`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from car.errors import CarError

SIM_EVAL_MODULE = "car.commands.sim_eval"
"""Where `car sim eval` takes its `add_arguments(parser)` and `run(args)` from (imported only when used)."""
SIM_COLLECT_MODULE = "car.commands.sim_collect"
"""Where `car sim collect` takes its `add_arguments(parser)` and `run(args)` from."""

LAZY_ACTIONS: dict[str, str] = {
    "eval": "closed-loop evaluation in the simulated world",
    "collect": "closed-loop training frames: drive a model, save what it saw, labelled by the world",
}
"""Actions whose options and code live in their own module (see `_lazy_module`), with their help."""


def _lazy_module(action: str) -> str:
    """The module of a lazy action, read when it runs (so a test can point it elsewhere)."""
    return {"eval": SIM_EVAL_MODULE, "collect": SIM_COLLECT_MODULE}[action]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _kind_weights(text: str) -> dict[str, float]:
    """`can_path=0.5,empty=1` → {kind: weight}."""
    from vision.sim import SCENE_KINDS

    weights: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in SCENE_KINDS:
            raise argparse.ArgumentTypeError(
                f"unknown scene kind {name!r}; choose from {sorted(SCENE_KINDS)}"
            )
        try:
            weights[name] = float(value) if value else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: weight must be a number (kind=weight)") from None
        if weights[name] < 0:
            raise argparse.ArgumentTypeError(f"{part!r}: weight must be >= 0")
    if sum(weights.values()) <= 0:
        raise argparse.ArgumentTypeError("the weights must not all be 0")
    return weights


def _add_dataset(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dataset", help="write N labelled frames, masks and a manifest")
    p.add_argument("--out", type=Path, required=True, help="new or empty folder")
    p.add_argument("--n", type=_positive_int, required=True, help="number of frames")
    p.add_argument("--seed", type=int, default=0, help="same seed, same files (default 0)")
    p.add_argument(
        "--kinds",
        type=_kind_weights,
        help="scene mix as kind=weight,... (default: the built-in mix, about 42%% STOP)",
    )
    p.add_argument("--jpeg-quality", type=int, default=92, help="quality of the written JPEGs (default 92)")
    add_domain_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=_run_dataset)


def add_domain_argument(parser: argparse.ArgumentParser) -> None:
    """`--domain NAME`: the simulated world's look (`vision.sim.domains.DOMAINS`; `shifted`: unseen floors,
    colours and light)."""
    from vision.sim.domains import DOMAINS

    parser.add_argument(
        "--domain",
        choices=tuple(DOMAINS),
        default="default",
        help="the world's look: " + "; ".join(f"{d.name}: {d.description}" for d in DOMAINS.values()),
    )


def add_perturb_argument(parser: argparse.ArgumentParser) -> None:
    """`--perturb LIST`: sensor and timing perturbations of every run (`vision.sim.perturb`), or `all`."""
    from vision.sim.perturb import PERTURBATIONS

    parser.add_argument(
        "--perturb",
        default="",
        metavar="LIST",
        help=f"comma-separated sensor/timing perturbations, or 'all': {', '.join(PERTURBATIONS)}",
    )


def parse_perturbations(text: str) -> tuple[str, ...]:
    """The names of a `--perturb` value, checked (`all`: every one)."""
    from vision.sim.perturb import PERTURBATIONS

    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(PERTURBATIONS)
    for name in names:
        if name not in PERTURBATIONS:
            raise CarError(f"--perturb {name!r}: choose 'all' or from {', '.join(PERTURBATIONS)}")
    return tuple(names)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="render a short drive towards a can: MP4 + contact sheet")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument(
        "--speed", type=float, default=0.6, help="fraction of full speed while driving (default 0.6)"
    )
    p.set_defaults(handler=_run_demo)


def _add_lazy(sub: argparse._SubParsersAction[argparse.ArgumentParser], action: str) -> None:
    # everything after the action (options included) goes to its module's own parser: no option prefix here
    p = sub.add_parser(action, help=LAZY_ACTIONS[action], add_help=False, prefix_chars="\x00")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(handler=partial(_run_lazy, action))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_dataset(sub)
    _add_demo(sub)
    for action in LAZY_ACTIONS:
        _add_lazy(sub, action)


def _run_dataset(args: argparse.Namespace) -> int:
    from vision.sim import WorldConfig
    from vision.sim.dataset import write_dataset

    if not 1 <= args.jpeg_quality <= 100:
        raise CarError(f"--jpeg-quality {args.jpeg_quality}: must be in 1..100")
    summary = write_dataset(
        args.out,
        args.n,
        seed=args.seed,
        config=WorldConfig(domain=args.domain),
        weights=args.kinds,
        jpeg_quality=args.jpeg_quality,
        progress=not (args.no_progress or args.json),
    )
    if args.json:
        payload = {
            "out": str(summary.out),
            "n": summary.n,
            "go": summary.by_label[0],
            "stop": summary.by_label[1],
            "kinds": dict(summary.by_kind),
            "seconds": round(summary.seconds, 3),
        }
        print(json.dumps(payload))
    else:
        print(summary.format())
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from vision.sim.demo import run_demo

    result = run_demo(args.out, seed=args.seed, fps=args.fps, speed_fraction=args.speed)
    stopped = (
        "never stopped"
        if result.stop_distance_m is None
        else f"stopped {result.stop_distance_m:.2f} m from the can"
    )
    print(f"demo: {result.frames} frames, {stopped}, collided: {'yes' if result.collided else 'no'}")
    print(f"video: {result.video}")
    print(f"contact sheet: {result.sheet}")
    return 0


def _run_lazy(action: str, args: argparse.Namespace) -> int:
    name = _lazy_module(action)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise CarError(f"`car sim {action}` is not available yet ({name} is not in this build)") from exc
    parser = argparse.ArgumentParser(prog=f"car sim {action}", description=LAZY_ACTIONS[action])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(args.rest)) or 0)


def run(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
