"""The car's control loop, flat out: throughput, frame-to-command latency, memory, start-up.

One `car drive` process (a fresh interpreter, exactly as on the car) runs the closed loop with the simulated
camera unthrottled (`source.fps=0`, `loop.rate_hz=0`), the virtual microcontroller on a real pty, the
`edge` network in onnxruntime and the drive log writing lossless frames. From that one run:

- throughput: frames per second through the whole loop (capture → ... → log), the simulator's rendering
  included (it is the "camera"); and the loop alone: 1000 / (tick p50 − capture p50);
- latency p50/p99: frame capture → the command's bytes written to the serial port;
- resident memory: the drive process's peak RSS (VmHWM at its end);
- start-up: from launching the process to the first command written;
- imports: whether torch or shap were loaded (they must not be).

Targets (README): ≥ 100 frames/s, p99 ≤ 15 ms, RSS ≤ 300 MB, start-up ≤ 2 s, no torch/shap.

Then the web console's cost (`viewer_cost`): the same unthrottled drive without `--web`, with `--web` and
nobody watching, and with `--web` and one viewer connected (a WebSocket client in this process reading
every snapshot and frame the console sends), interleaved over `VIEWER_ROUNDS` rounds; the per-tick cost
is the difference of the tick medians.
The shipped bundle (models/edge-sim) is used when present; otherwise an untrained EdgeNet exported the same
way (identical compute), which needs torch in this benchmark process only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vision.bundle import DEFAULT_BUNDLE

SECONDS = 6.0
VIEWER_SECONDS = 4.0
VIEWER_ROUNDS = 3
TARGETS = {"frames_per_s": 100.0, "latency_p99_ms": 15.0, "rss_mb": 300.0, "startup_s": 2.0}

PROBE = """
import json, sys
from car.cli import main
code = main(["drive", "--set", "model.bundle={bundle}", "--set", "source.fps=0", "--set", "loop.rate_hz=0",
             "--duration", "{seconds}", "--log", "{log}", "--json"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "shap"))
# VmHWM: this process's own peak (ru_maxrss would include the parent's peak from before the fork/exec)
rss_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({{"code": code, "heavy": heavy, "rss_kb": rss_kb}}))
"""


WEB_PROBE = """
import json, sys
from car.cli import main
code = main(["drive", "--set", "model.bundle={bundle}", "--set", "source.fps=0", "--set", "loop.rate_hz=0",
             "--duration", "{seconds}", "--log", "{log}", "--json"{web}])
print(json.dumps({{"code": code}}))
"""


def edge_bundle(workdir: Path) -> tuple[Path, str]:
    if (DEFAULT_BUNDLE / "manifest.json").exists():
        return DEFAULT_BUNDLE, "shipped models/edge-sim"
    import torch

    from vision.export import build_bundle
    from vision.networks import EdgeNet

    torch.manual_seed(0)
    path = workdir / "edge-untrained"
    build_bundle(EdgeNet(), "edge", path, name="edge-untrained")
    return path, "untrained EdgeNet (models/edge-sim not built yet)"


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        workdir = Path(tmp)
        bundle, which = edge_bundle(workdir)
        log = workdir / "drive.sqlite"
        code = PROBE.format(bundle=bundle, seconds=SECONDS, log=log)
        launched = time.time()
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=SECONDS + 120,
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"car drive failed:\n{proc.stderr[-2000:]}")
        lines = proc.stdout.strip().splitlines()
        drive = json.loads(lines[-2])
        probe = json.loads(lines[-1])
        log_mb = log.stat().st_size / 1e6
        web_cost = viewer_cost(bundle, workdir)

    stages = drive["stages"]
    tick_ms = stages["tick"]["p50_ms"]
    ticks_per_s = drive["frames"] / SECONDS
    figures: dict[str, object] = {
        "bundle": which,
        "seconds": SECONDS,
        "frames": drive["frames"],
        "frames_per_s": ticks_per_s,
        "latency_p50_ms": stages["latency"]["p50_ms"],
        "latency_p99_ms": stages["latency"]["p99_ms"],
        "tick_p50_ms": tick_ms,
        # The loop's own work per frame (everything but producing the frame): what a camera that
        # delivers frames on its own thread leaves to the loop.
        "loop_only_frames_per_s": 1000.0 / max(tick_ms - stages["capture"]["p50_ms"], 1e-6),
        "rss_mb": probe["rss_kb"] / 1024.0,  # the drive process's own peak (VmHWM)
        "startup_s": drive["first_command_unix"] - launched,
        "imports_torch_or_shap": bool(probe["heavy"]),
        "dropped_images": drive["dropped_images"],
        "log_mb": log_mb,
        "stage_p50_ms": {k: v["p50_ms"] for k, v in stages.items()},
        "stage_p99_ms": {k: v["p99_ms"] for k, v in stages.items()},
        "web_console": web_cost,
    }
    print(f"car drive, simulated camera unthrottled, virtual MCU on a pty, {which}, {SECONDS:.0f} s")
    print(f"  {'figure':<28}{'value':>10}  target")
    rows = (
        ("throughput (frames/s)", figures["frames_per_s"], ">= 100"),
        ("loop alone, no render (fr/s)", figures["loop_only_frames_per_s"], ""),
        ("latency p50 (ms)", figures["latency_p50_ms"], ""),
        ("latency p99 (ms)", figures["latency_p99_ms"], "<= 15"),
        ("peak RSS (MB)", figures["rss_mb"], "<= 300"),
        ("start-up to 1st command (s)", figures["startup_s"], "<= 2"),
    )
    for name, value, target in rows:
        print(f"  {name:<28}{float(value):>10.2f}  {target}")  # type: ignore[arg-type]
    print(f"  torch/shap imported: {'YES' if figures['imports_torch_or_shap'] else 'no'}")
    print(f"  dropped images: {figures['dropped_images']}, log size {log_mb:.1f} MB")
    print(
        "  per stage p50 / p99 (ms): "
        + ", ".join(f"{k} {stages[k]['p50_ms']:.2f}/{stages[k]['p99_ms']:.2f}" for k in stages)
    )
    print_viewer_cost(web_cost)
    return figures


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def watch(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    """One viewer: connect to the console's socket as soon as it answers and read everything it sends."""
    from websockets.sync.client import connect

    while not stop.is_set():
        try:
            with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=1.0) as ws:
                while not stop.is_set():
                    try:
                        message = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    counts["viewer_frames" if isinstance(message, bytes) else "viewer_snapshots"] += 1
        except (OSError, TimeoutError):
            time.sleep(0.05)
        except Exception:  # the drive ended and closed the socket
            return


def one_drive(bundle: Path, workdir: Path, side: str, index: int) -> dict[str, object]:
    port = free_port()
    web = f', "--web", "127.0.0.1:{port}"' if side != "no --web" else ""
    log = workdir / f"viewer-{index}.sqlite"
    code = WEB_PROBE.format(bundle=bundle, seconds=VIEWER_SECONDS, log=log, web=web)
    counts = {"viewer_frames": 0, "viewer_snapshots": 0}
    stop = threading.Event()
    viewer = threading.Thread(target=watch, args=(port, stop, counts), daemon=True)
    if side == "one viewer":
        viewer.start()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=VIEWER_SECONDS + 120,
        check=False,
    )
    stop.set()
    if proc.returncode != 0:
        raise RuntimeError(f"car drive ({side}) failed:\n{proc.stderr[-2000:]}")
    drive = json.loads(proc.stdout.strip().splitlines()[-2])
    return {**drive, **counts}


def viewer_cost(bundle: Path, workdir: Path) -> dict[str, object]:
    """Tick time and throughput without --web, with --web and nobody watching, and with one viewer."""
    sides = ("no --web", "--web, no viewer", "one viewer")
    runs: dict[str, list[dict[str, object]]] = {side: [] for side in sides}
    for round_ in range(VIEWER_ROUNDS):
        for side in sides:  # interleaved: the machine's load drifts alike for all three
            runs[side].append(one_drive(bundle, workdir, side, round_ * 10 + sides.index(side)))
    figures: dict[str, dict[str, float]] = {}
    for side, drives in runs.items():
        n = len(drives)
        figures[side] = {
            "tick_p50_ms": sum(_stage(d, "tick", "p50_ms") for d in drives) / n,
            "tick_p99_ms": sum(_stage(d, "tick", "p99_ms") for d in drives) / n,
            "latency_p50_ms": sum(_stage(d, "latency", "p50_ms") for d in drives) / n,
            # the log stage includes the on_record hook: the hub's publish() is all the loop thread does
            "log_stage_p50_ms": sum(_stage(d, "log", "p50_ms") for d in drives) / n,
            "frames_per_s": sum(_count(d, "frames") for d in drives) / (n * VIEWER_SECONDS),
            "viewer_frames_per_s": sum(_count(d, "viewer_frames") for d in drives) / (n * VIEWER_SECONDS),
        }
    base = figures["no --web"]["tick_p50_ms"]
    return {
        "seconds_per_run": VIEWER_SECONDS,
        "rounds": VIEWER_ROUNDS,
        "sides": figures,
        "added_tick_p50_ms_one_viewer": figures["one viewer"]["tick_p50_ms"] - base,
        "added_tick_p50_ms_web_no_viewer": figures["--web, no viewer"]["tick_p50_ms"] - base,
    }


def print_viewer_cost(cost: dict[str, object]) -> None:
    sides = cost["sides"]
    assert isinstance(sides, dict)
    base = sides["no --web"]["tick_p50_ms"]
    rounds = f"{VIEWER_ROUNDS} interleaved rounds of {VIEWER_SECONDS:.0f} s a side"
    print(f"web console cost: the same drive, {rounds}")
    head = ("side", "tick p50", "tick p99", "latency p50", "log p50", "loop fr/s", "viewer fr/s", "+tick p50")
    print(f"  {head[0]:<18}" + "".join(f"{h:>12}" for h in head[1:]))
    for side, f in sides.items():
        values = (f["tick_p50_ms"], f["tick_p99_ms"], f["latency_p50_ms"], f["log_stage_p50_ms"])
        print(
            f"  {side:<18}"
            + "".join(f"{v:>12.2f}" for v in values)
            + f"{f['frames_per_s']:>12.1f}{f['viewer_frames_per_s']:>12.1f}{f['tick_p50_ms'] - base:>+12.2f}"
        )


def _count(drive: dict[str, object], key: str) -> float:
    value = drive[key]
    assert isinstance(value, int | float)
    return float(value)


def _stage(drive: dict[str, object], stage: str, key: str) -> float:
    stages = drive["stages"]
    assert isinstance(stages, dict)
    return float(stages[stage][key])


if __name__ == "__main__":
    run()
