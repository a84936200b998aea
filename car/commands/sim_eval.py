"""`car sim eval`: the options and output of the closed-loop evaluation (the work is in `car.sim_eval`).

- `car sim eval --runs N --seed S [--jobs J] [--domain shifted] [--perturb LIST] [--json]`: N runs.
- `--runs-out FILE`: every run's outcome as a JSON line, written as each run finishes (a long evaluation
  stopped early still leaves every finished run), after a header line naming what the runs depend on
  (`car.eval_runs`).
- `--save-failures DIR`: each collision, false stop and timeout as an ordinary drive log in DIR, named by
  outcome, run number, seed and kind (`car log info`, `car replay`, `car explain` read them).
- `--run SEED:KIND`: one run exactly as it ran inside an evaluation (`--log FILE` keeps its drive log).
- `--resume` (with `--runs-out FILE`): go on with an evaluation stopped early: the runs already in FILE are
  kept, the rest are run and appended, and the report covers all.
- `--from-runs FILE`: no runs, the report of a --runs-out file (with the world and perturbations its header
  records).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from car import engines
from car.commands.sim import add_domain_argument, add_perturb_argument, parse_perturbations
from car.config import CarConfig, load_config, with_overrides
from car.errors import CarError
from vision.sim import SCENE_KINDS, WorldConfig

if TYPE_CHECKING:
    from car.eval_runs import RunsFile
    from car.sim_eval import EvalSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=200, help="number of simulated drives (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes (default 0)")
    parser.add_argument(
        "--model", type=Path, default=None, help="bundle (default: the config's, models/edge-sim)"
    )
    parser.add_argument("--config", type=Path, default=None, help="drive config for policy and loop settings")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override")
    parser.add_argument(
        "--kinds",
        default="",
        help=f"comma-separated scene kinds (default: the mix of {', '.join(SCENE_KINDS)})",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    engines.add_engine_arguments(parser)
    add_domain_argument(parser)
    add_perturb_argument(parser)
    parser.add_argument("--runs-out", type=Path, default=None, help="write every run's outcome as JSON lines")
    parser.add_argument(
        "--save-failures", type=Path, default=None, metavar="DIR", help="a drive log per failing run"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --runs-out: keep the runs already in that file and run only the rest (same options)",
    )
    parser.add_argument("--run", default=None, metavar="SEED:KIND", help="repeat one run exactly")
    parser.add_argument("--log", type=Path, default=None, help="with --run: write its drive log here")
    parser.add_argument(
        "--from-runs",
        type=Path,
        default=None,
        metavar="FILE",
        help=(
            "no runs: summarise a --runs-out file (e.g. of an evaluation stopped early) with the domain "
            "and perturbations its header records (a file without a header: give --domain and --perturb)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def _config(args: argparse.Namespace) -> CarConfig:
    config = load_config(args.config)
    overrides = list(args.set)
    if args.model is not None:
        overrides.append(f"model.bundle={args.model}")
    return with_overrides(config, overrides) if overrides else config


def run(args: argparse.Namespace) -> int:
    from car.sim_eval import EvalSettings, evaluate, format_report, save_failures

    if args.runs < 1:
        raise CarError(f"--runs {args.runs}: give at least 1")
    if args.jobs < 1:
        raise CarError(f"--jobs {args.jobs}: give at least 1")
    if args.log is not None and args.run is None:
        raise CarError(
            "--log needs --run SEED:KIND (an evaluation saves its failing runs with --save-failures)"
        )
    config = _config(args)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    settings = EvalSettings(
        runs=args.runs,
        seed=args.seed,
        kinds=kinds,
        world=WorldConfig(domain=args.domain),
        perturbations=parse_perturbations(args.perturb),
    )
    if args.run is not None:
        return _run_one(args, settings, config)
    if args.from_runs is not None:
        return _summarise_file(args, settings)
    header = _header(settings, config) if args.runs_out is not None else None
    earlier = _resumed_runs(args, settings, header)
    done = [] if earlier is None else earlier.outcomes
    stream = _open_runs_out(args.runs_out, header, appending=earlier is not None)
    try:
        report = evaluate(
            settings,
            config,
            jobs=args.jobs,
            progress=not args.json,
            on_outcome=None if stream is None else lambda o: _write_line(stream, asdict(o)),
            engine=engines.engine_from_args(args),
            done=done,
        )
    finally:
        if stream is not None:
            stream.close()
    saved = (
        []
        if args.save_failures is None
        else save_failures(report.outcomes, settings, config, args.save_failures)
    )
    if args.json:
        doc = report.to_dict()
        if args.save_failures is not None:
            doc["failure_logs"] = [str(p) for p in saved]
        print(json.dumps(doc, indent=2))
    else:
        print(format_report(report))
        for path in saved:
            print(f"  failure log: {path}")
    return 0


def _open_runs_out(path: Path | None, header: dict[str, Any] | None, *, appending: bool) -> TextIO | None:
    """The --runs-out file to write runs into: appended to (--resume), or written anew from its header."""
    from car.eval_runs import header_line

    if path is None or header is None:
        return None
    stream = path.open("a" if appending else "w")
    if not appending:
        stream.write(header_line(header))
        stream.flush()
    return stream


def _header(settings: EvalSettings, config: CarConfig) -> dict[str, Any]:
    from car.config import resolve_path
    from car.eval_runs import evaluation_header
    from vision.bundle import load_bundle

    bundle = load_bundle(resolve_path(config.model.bundle))
    return evaluation_header(settings, config, bundle.sha256)


def _resumed_runs(
    args: argparse.Namespace, settings: EvalSettings, header: dict[str, Any] | None
) -> RunsFile | None:
    """With --resume and a --runs-out file that has content: its runs (checked against the settings and,
    where the file has a header, against this command's header); else None (the file is written anew)."""
    from car.eval_runs import check_header, parse_runs_file, read_runs_text
    from car.sim_eval import check_resumable

    if not args.resume:
        return None
    if args.runs_out is None or header is None:
        raise CarError("--resume needs --runs-out FILE: the file of the evaluation to go on with")
    if not args.runs_out.exists():
        return None
    source = f"--runs-out {args.runs_out}"
    text = read_runs_text(args.runs_out, source)
    if not text.strip():
        return None
    if not text.endswith("\n"):
        raise CarError(
            f"{source}: its last line is cut short (the evaluation was killed while "
            "writing it); delete that line and resume"
        )
    earlier = parse_runs_file(text, source)
    if earlier.header is not None:
        check_header(earlier.header, header, source)
    check_resumable(earlier.outcomes, settings, source)
    return earlier


def _summarise_file(args: argparse.Namespace, settings: EvalSettings) -> int:
    """`--from-runs`: the report of a --runs-out file, with the world and perturbations its header records
    (a file older than headers: those of --domain and --perturb)."""
    from car.eval_runs import parse_runs_file, read_runs_text, settings_from_header
    from car.sim_eval import format_report, summarise

    source = f"--from-runs {args.from_runs}"
    runs = parse_runs_file(read_runs_text(args.from_runs, source), source)
    if runs.header is not None:
        recorded = settings_from_header(runs.header, len(runs.outcomes), source)
        if args.domain != "default":
            _check_flag("--domain", settings.world.domain, recorded.world.domain, source)
        if args.perturb:
            _check_flag("--perturb", settings.perturbations, recorded.perturbations, source)
        settings = recorded
    report = summarise(runs.outcomes, f"{args.from_runs}", 0.0, settings)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


def _check_flag(option: str, value: object, recorded: object, source: str) -> None:
    """A --from-runs option given though the file's header records it must agree with the header."""
    if value != recorded:
        raise CarError(
            f"{source}: its runs were made with {option} {recorded!r}, not {value!r}; leave {option} out "
            "(the file's header says which)"
        )


def _write_line(stream: TextIO, doc: dict[str, object]) -> None:
    stream.write(json.dumps(doc) + "\n")
    stream.flush()


def _run_one(args: argparse.Namespace, settings: EvalSettings, config: CarConfig) -> int:
    from car.sim_eval import RunContext, RunSpec

    spec = RunSpec.parse(args.run)
    outcome = RunContext.load(settings, config).simulate_spec(spec, log_path=args.log)
    if args.json:
        print(json.dumps(asdict(outcome), indent=2))
    else:
        distance = (
            ""
            if outcome.stop_distance_m is None
            else f", stopped {outcome.stop_distance_m:.3f} m from the can"
        )
        print(f"run seed {spec.seed} ({spec.kind}): {outcome.outcome}{distance}, {outcome.frames} frames")
        if args.log is not None:
            print(f"log: {args.log}")
    return 0
