"""`car sim collect`: its options and its run; the collection itself is `car.sim_collect.collect`.

Loaded only when the action runs (`car.commands.sim.SIM_COLLECT_MODULE`), like `car sim eval`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from car import engines
from car.commands.sim import add_domain_argument, add_perturb_argument, parse_perturbations
from car.config import load_config, with_overrides
from car.sim_collect import DEFAULT_KEEP, CollectSettings, collect, parse_keep
from car.sim_eval import EVAL_SEEDS
from vision.sim import SCENE_KINDS, WorldConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", type=Path, required=True, help="the bundle that drives, e.g. models/edge-sim"
    )
    parser.add_argument("--runs", type=int, required=True, help="number of simulated drives")
    parser.add_argument(
        "--seed",
        type=int,
        required=True,
        help=f"seed of the scenes (not an evaluation seed: {', '.join(map(str, EVAL_SEEDS))})",
    )
    parser.add_argument("--out", type=Path, required=True, help="new or empty folder for the frames")
    parser.add_argument(
        "--kinds",
        default="",
        help=f"comma-separated scene kinds (default: the mix of {', '.join(SCENE_KINDS)})",
    )
    parser.add_argument(
        "--keep",
        default=DEFAULT_KEEP,
        help=(
            "which frames to save: comma list of wrong, disagree, error=E, every=K, all "
            f"(default {DEFAULT_KEEP})"
        ),
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    engines.add_engine_arguments(parser)
    parser.add_argument("--config", type=Path, default=None, help="drive config for policy and loop settings")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override")
    parser.add_argument(
        "--jpeg-quality", type=int, default=92, help="quality of the written JPEGs (default 92)"
    )
    add_domain_argument(parser)
    add_perturb_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def settings_from_args(args: argparse.Namespace) -> CollectSettings:
    return CollectSettings(
        out=args.out,
        runs=args.runs,
        seed=args.seed,
        kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()),
        keep=parse_keep(args.keep),
        jpeg_quality=args.jpeg_quality,
        world=WorldConfig(domain=args.domain),
        perturbations=parse_perturbations(args.perturb),
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    config = load_config(args.config)
    config = with_overrides(config, [*args.set, f"model.bundle={args.model}"])
    summary = collect(
        settings, config, jobs=args.jobs, progress=not args.json, engine=engines.engine_from_args(args)
    )
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0
