"""`car firmware`: microcontroller tools.

- `car firmware emulate`: run the virtual microcontroller (the reference firmware, firmware_bridge.mcu) on
  a pty and print its path, so `car drive --config ...` with `link.mcu: serial`, pyserial's miniterm, or
  any program can talk to it. Runs until Ctrl-C (or `--duration`).
- `car firmware ping PORT`: handshake with a firmware on a real port (or any pyserial URL), measure the
  heartbeat round trip and print its counters: the first thing to run after wiring a car.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from firmware_bridge.errors import LinkError
from firmware_bridge.host import FirmwareRequirements
from firmware_bridge.link import SerialLink
from firmware_bridge.mcu import FirmwareConfig
from firmware_bridge.virtual_mcu import McuSnapshot, VirtualMcu


@dataclass(frozen=True, slots=True)
class Action:
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    help: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, action in ACTIONS.items():
        action.add_arguments(sub.add_parser(name, help=action.help, description=action.help))


def run(args: argparse.Namespace) -> int:
    return ACTIONS[args.action].run(args)


# ---------------------------------------------------------------------------------------------- emulate


def _emulate_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = FirmwareConfig()
    parser.add_argument(
        "--watchdog-ms",
        type=int,
        default=defaults.watchdog_ms,
        help=f"command watchdog: motors off after this much silence (default {defaults.watchdog_ms}; "
        "0 disables it, which the host refuses)",
    )
    parser.add_argument("--speed-min", type=int, default=defaults.speed_min, help="reverse limit, permille")
    parser.add_argument("--speed-max", type=int, default=defaults.speed_max, help="forward limit, permille")
    parser.add_argument(
        "--link", default=None, help="create the port symlink here (default: a fresh temporary directory)"
    )
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--json", action="store_true", help="print the port and every state change as JSON")


def _describe(snap: McuSnapshot) -> str:
    c = snap.counters
    return (
        f"state {snap.state.name:<8} motors {snap.motor_left:+5d}/{snap.motor_right:+5d} permille  "
        f"rx {snap.bytes_received} B  tx {snap.bytes_sent} B  discarded {c.discarded}  "
        f"garbage {c.garbage_bytes} B  clamped {c.clamped}  watchdog trips {c.watchdog_trips}"
    )


def _snapshot_json(snap: McuSnapshot) -> str:
    return json.dumps(
        {
            "state": snap.state.name,
            "motor_left": snap.motor_left,
            "motor_right": snap.motor_right,
            "counters": asdict(snap.counters),
            "bytes_received": snap.bytes_received,
            "bytes_sent": snap.bytes_sent,
        }
    )


def _emulate(args: argparse.Namespace) -> int:
    try:
        config = FirmwareConfig(
            watchdog_ms=args.watchdog_ms, speed_min=args.speed_min, speed_max=args.speed_max
        )
    except ValueError as exc:
        raise LinkError(
            f"invalid firmware settings: {exc}; fix --watchdog-ms/--speed-min/--speed-max"
        ) from exc
    if args.duration is not None and args.duration <= 0:
        raise LinkError(
            f"--duration {args.duration} must be > 0 seconds (or leave it out to run until Ctrl-C)"
        )
    with VirtualMcu(config, link_path=args.link) as mcu:
        version = ".".join(str(v) for v in config.firmware_version)
        if args.json:
            print(json.dumps({"port": mcu.path, "pty": mcu.pty_name, "firmware": asdict(config)}), flush=True)
        else:
            print(
                f"virtual microcontroller: protocol v1, firmware {version}, "
                f"watchdog {config.watchdog_ms} ms, speed {config.speed_min}..{config.speed_max} permille"
            )
            print(f"port: {mcu.path}   (pty {mcu.pty_name}, 115200 8N1)")
            print(f"talk to it: python -m serial.tools.miniterm --raw --encoding hexlify {mcu.path} 115200")
            print("state changes follow; Ctrl-C stops", flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        last = ""
        try:
            while deadline is None or time.monotonic() < deadline:
                snap = mcu.snapshot()
                key = (
                    f"{snap.state}/{snap.motor_left}/{snap.counters.discarded}/{snap.counters.watchdog_trips}"
                )
                if key != last:
                    last = key
                    print(_snapshot_json(snap) if args.json else _describe(snap), flush=True)
                if mcu.error is not None:
                    raise LinkError(f"virtual microcontroller failed: {mcu.error!r}")
                time.sleep(0.02)
        except KeyboardInterrupt:
            pass
        if not args.json:
            print(f"stopped. final: {_describe(mcu.snapshot())}")
    return 0


# ------------------------------------------------------------------------------------------------- ping


def _ping_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", help="/dev/ttyUSB0, /dev/ttyACM0, socket://host:port, spy:///dev/ttyUSB0 ...")
    parser.add_argument("--baudrate", type=int, default=115200)
    parser.add_argument("--count", type=int, default=50, help="heartbeats to time (default 50)")
    parser.add_argument(
        "--handshake-timeout-s", type=float, default=3.0, help="an Arduino needs ~2 s to boot after open"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def _ping(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise LinkError(f"--count {args.count} must be >= 1")
    requirements = FirmwareRequirements(allow_watchdog_off=True)  # report it, don't refuse to look
    with SerialLink(
        args.port,
        baudrate=args.baudrate,
        handshake_timeout_s=args.handshake_timeout_s,
        requirements=requirements,
    ) as link:
        info = link.handshake()
        rtts: list[float] = []
        for _ in range(args.count):
            ack = link.wait_ack(link.heartbeat(), 0.5)
            if ack is None or ack.rtt_s is None:
                raise LinkError(f"{args.port}: heartbeat not acknowledged within 0.5 s; check the wiring")
            rtts.append(ack.rtt_s)
        status = link.request_status()
    rtts.sort()
    counters = {
        "garbage_bytes": status.garbage_bytes,
        "crc_errors": status.crc_errors,
        "oversized": status.oversized,
        "truncated": status.truncated,
        "unknown_type": status.unknown_type,
        "bad_length": status.bad_length,
        "clamped": status.clamped,
        "watchdog_trips": status.watchdog_trips,
    }
    rtt_p50_ms, rtt_max_ms = statistics.median(rtts) * 1000.0, rtts[-1] * 1000.0
    figures = {
        "port": args.port,
        "firmware": asdict(info),
        "rtt_ms_p50": rtt_p50_ms,
        "rtt_ms_max": rtt_max_ms,
        "state": status.state.name,
        "counters": counters,
        "uptime_ms": status.uptime_ms,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    warn = "  (WATCHDOG OFF: bench build, the car will refuse it)" if info.watchdog_ms == 0 else ""
    print(
        f"{args.port}: protocol v{info.protocol_version}, firmware {info.firmware_version}, "
        f"watchdog {info.watchdog_ms} ms{warn}, speed {info.speed_min}..{info.speed_max} permille"
    )
    print(f"heartbeat round trip over {args.count}: p50 {rtt_p50_ms:.2f} ms, max {rtt_max_ms:.2f} ms")
    listed = ", ".join(f"{k} {v}" for k, v in counters.items())
    print(f"firmware state {status.state.name}, up {status.uptime_ms / 1000:.1f} s; {listed}")
    return 0


ACTIONS: Mapping[str, Action] = {
    "emulate": Action(_emulate_arguments, _emulate, "run the virtual microcontroller on a pty until Ctrl-C"),
    "ping": Action(_ping_arguments, _ping, "handshake with a firmware, time heartbeats, print its counters"),
}
