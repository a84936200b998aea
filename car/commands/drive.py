"""`car drive`: run the car (camera or simulated world -> detector -> policy -> firmware), log it all."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from car.config import CarConfig, field_docs, load_config, replace_field, with_overrides
from car.errors import CarError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML config (default: the embedded simulation config, = configs/sim.yaml; "
        "configs/car.yaml for a real car)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to drive (default: until Ctrl-C)"
    )
    parser.add_argument(
        "--log", type=Path, default=None, help="drive log file (default: runs/drives/<UTC>.sqlite)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set loop.rate_hz=20 (repeatable)",
    )
    parser.add_argument(
        "--web",
        default=None,
        metavar="[HOST:]PORT",
        help="serve the live console (camera, P(STOP), faults, STOP button) on this port; HOST defaults to "
        "127.0.0.1, any other address needs a token (CAR_WEB_TOKEN or --set web.token=auto)",
    )
    parser.add_argument(
        "--mode",
        choices=("auto", "manual"),
        default=None,
        help="manual: drive from the console page (teleop, needs --web); the network runs in shadow",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON at the end")
    parser.add_argument("--list-config", action="store_true", help="list every config key with its default")


def effective_config(args: argparse.Namespace) -> CarConfig:
    config = load_config(args.config)
    if args.set:
        config = with_overrides(config, args.set, origin="--set")
    if args.duration is not None:
        config = with_overrides(config, [f"loop.duration_s={args.duration}"], origin="--duration")
    if args.log is not None:
        config = replace_field(config, "log", path=str(args.log))
    if getattr(args, "web", None) is not None:
        config = replace_field(config, "web", listen=str(args.web))
    if getattr(args, "mode", None) is not None:
        config = replace_field(config, "web", mode=args.mode)
    if config.web.mode == "manual" and not config.web.listen:
        raise CarError("manual mode drives from the web console: give --web PORT (e.g. --web 8080)")
    return config


def run(args: argparse.Namespace) -> int:
    if args.list_config:
        for key, default, allowed, help_text in field_docs():
            print(f"{key:<26} {default:<18} {allowed:<40} {help_text}")
        return 0
    config = effective_config(args)
    from car.build import warm_up_source

    warm_up_source(config)  # the simulator's textures build while the rest of the drive code imports
    from car.run_drive import DriveResult, drive

    out = (lambda _line: None) if args.json else print
    result: DriveResult
    if config.web.listen:  # only now is the web stack imported
        import sys

        from car.web.live import LiveConsole, redacted

        say = (lambda line: print(line, file=sys.stderr)) if args.json else print  # stdout stays JSON
        with LiveConsole(config, out=say) as console:
            result = drive(redacted(config), hooks=console.hooks(), out=out)
    else:
        result = drive(config, out=out)
    if args.json:
        s = result.summary
        stages = {x.stage: {"p50_ms": x.p50_ms, "p99_ms": x.p99_ms, "count": x.count} for x in s.stages}
        print(
            json.dumps(
                {
                    "log": str(result.log_path),
                    "end_reason": s.end_reason,
                    "ticks": s.ticks,
                    "frames": s.frames,
                    "stops": s.stops,
                    "drives": s.drives,
                    "faults": dict(s.fault_counts),
                    "overruns": s.overruns,
                    "dropped_images": s.dropped_images,
                    "startup_s": result.startup_s,
                    "first_command_unix": result.first_command_unix,
                    "stages": stages,
                },
                allow_nan=True,
            )
        )
    return 0
