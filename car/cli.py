"""The `car` command line.

Sub-commands are looked up in a table and their module is imported only when chosen, so `car drive` never
pays for (or even imports) what `car train` or `car explain` need. Each command module provides
`add_arguments(parser)` and `run(args) -> int`; tests call `run` (or the functions behind it) directly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from car.errors import user_error_types


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    module: str
    help: str


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("drive", "car.commands.drive", "run the car: camera/sim -> detector -> policy -> firmware"),
    CommandSpec("replay", "car.commands.replay", "re-run a network on a drive log's frames; check decisions"),
    CommandSpec("log", "car.commands.log", "inspect or export a drive log (info, export)"),
    CommandSpec(
        "collect", "car.commands.collect", "drive by hand from the web console (teleop) to collect frames"
    ),
    CommandSpec("label", "car.commands.label", "label logged frames GO/STOP in a browser into a dataset"),
    CommandSpec("explain", "explain.cli", "DeepSHAP audit of a drive log, with an HTML report"),
    CommandSpec("explain-image", "explain.image_cli", "top classes of images, their maps, half-masking"),
    CommandSpec("sim", "car.commands.sim", "simulated world: dataset, demo, eval"),
    CommandSpec(
        "baseline", "car.commands.baseline", "the published intensity-threshold baseline on a folder"
    ),
    CommandSpec("train", "car.commands.train", "train a GO/STOP network into a model bundle"),
    CommandSpec("eval", "car.commands.evaluate", "evaluate a model bundle on a folder, beside the baseline"),
    CommandSpec("export", "car.commands.export", "export a bundle to ONNX (fp32, optional INT8)"),
    CommandSpec("import", "car.commands.import_", "import a torchvision classifier's weights as a bundle"),
    CommandSpec("threshold", "car.commands.threshold", "show or set a bundle's STOP threshold"),
    CommandSpec("bench", "car.commands.bench", "latency of torch vs onnxruntime fp32/INT8 per network"),
    CommandSpec("firmware", "car.commands.firmware", "virtual microcontroller tools (emulate)"),
    CommandSpec(
        "camera", "car.commands.camera", "list cameras; measure one (fps, jitter, latency, snapshot)"
    ),
    CommandSpec("fleet", "explain.fleet.cli", "audit many drive logs (local pool or Ray): one fleet report"),
)


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="car",
        description="GO/STOP edge car controller. `car COMMAND --help` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {c.name:<10} {c.help}" for c in COMMANDS),
    )
    parser.add_argument("command", metavar="COMMAND", choices=[c.name for c in COMMANDS], help="see below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def _load(spec: CommandSpec) -> ModuleType:
    return importlib.import_module(spec.module)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    ns = top.parse_args(argv[:1])
    spec = next(c for c in COMMANDS if c.name == ns.command)
    module = _load(spec)
    parser = argparse.ArgumentParser(prog=f"car {spec.name}", description=spec.help)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"car {spec.name}: interrupted", file=sys.stderr)
        return 130
    except user_error_types() as exc:
        if os.environ.get("CAR_DEBUG"):
            raise
        print(f"car {spec.name}: error: {exc}", file=sys.stderr)
        return 2
