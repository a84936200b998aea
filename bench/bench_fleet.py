"""The same fleet of drives audited serially, on the local process pool and on Ray, side by side.

Ten short simulated drives (`car drive --duration 20`, scenes of seeds 0-9, shipped `edge-sim`) are written
once; then each configuration is what a user types and waits for, timed from the command's start to its
exit: `car fleet audit LOGS --out DIR --engine E --workers W --threads 1 --json` in a fresh process (Python
start-up, imports, the workers' start-up, the audits, the fleet report). Configurations: the local engine
with 1 worker (serial, in the command's own process), Ray with 1 actor, the local pool with 2 processes,
Ray with 2 actors, in that interleaved order, each into a fresh folder. Ray runs as an existing cluster
would: `ray start --head --num-cpus 2` once before the timed runs (`--address auto`), its start-up
reported apart. One untimed warm-up audit of one drive on each engine comes first, so that both find the
same warm file caches and the cluster has run a job before (Ray Data starts its own helper actors once per
cluster). Reported: wall time per configuration, Ray's overhead against the local engine at the same worker
count (target ≤ 15 %), Ray 2 actors against 1 (target ≥ 1.7× on 2 cores), the per-drive and
per-explained-frame cost, and equal numbers everywhere.

Environment knobs: BENCH_FLEET_DRIVES (10), BENCH_FLEET_SECONDS (20 s per drive), BENCH_FLEET_ROUNDS (1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import car_command

DRIVES = int(os.environ.get("BENCH_FLEET_DRIVES", "10"))
SECONDS = float(os.environ.get("BENCH_FLEET_SECONDS", "20"))
ROUNDS = int(os.environ.get("BENCH_FLEET_ROUNDS", "1"))
CONFIGS = (("local", 1), ("ray", 1), ("local", 2), ("ray", 2))


AUDIT_OPTIONS = ("--background", "sim:0@25", "--occlusion-frames", "2", "--sanity-frames", "1")
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
"""Every command and the Ray cluster run with one math-library thread per process, as Ray gives its
single-CPU actors anyway: the same process settings on both sides (torch and onnxruntime take `--threads`)."""


def _env() -> dict[str, str]:
    return {**os.environ, **ONE_THREAD}


def _write_drives(folder: Path) -> None:
    """Two `car drive` processes at a time (each runs in real time, mostly waiting for its clock)."""
    pending = list(range(DRIVES))
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [
            subprocess.Popen(
                car_command(
                    "drive",
                    "--duration",
                    f"{SECONDS:g}",
                    "--log",
                    str(folder / f"drive{i:02d}.sqlite"),
                    "--set",
                    f"sim.seed={i}",
                    "--set",
                    "sim.scene=random",
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in batch
        ]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"car drive failed: {err.decode().strip().splitlines()[-1:]}")


def _audit(logs: list[Path], out: Path, engine: str, workers: int) -> dict[str, Any]:
    """`car fleet audit` in a fresh process, timed from start to exit."""
    command = car_command("fleet", "audit", *map(str, logs), "--out", str(out), "--engine", engine)
    command += ["--workers", str(workers), "--threads", "1", "--json", *AUDIT_OPTIONS]
    if engine == "ray":
        command += ["--address", "auto"]
    t0 = time.perf_counter()
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=_env())
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"car fleet audit failed: {done.stderr.strip().splitlines()[-3:]}")
    summary = json.loads(done.stdout)
    document = json.loads((out / "fleet.json").read_text(encoding="utf-8"))
    numbers = [
        (d["drive"], d["numbers"]["frames_explained"], d["numbers"]["flagged"]) for d in document["drives"]
    ]
    return {
        "wall_s": wall,
        "frames": summary["frames_explained"],
        "failed": summary["failed"],
        "numbers": numbers,
    }


def _ray(*args: str) -> None:
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray), *args], check=True, capture_output=True, env=_env())


def _start_ray() -> float:
    t0 = time.perf_counter()
    _ray("start", "--head", "--num-cpus", "2", "--include-dashboard=false", "--disable-usage-stats")
    return time.perf_counter() - t0


def _measure(tmp: Path, drives: list[Path]) -> tuple[dict[str, list[float]], dict[str, Any]]:
    for engine in ("local", "ray"):  # untimed warm-up, one drive each
        _audit(drives[:1], tmp / f"warmup-{engine}", engine, 1)
    walls: dict[str, list[float]] = {}
    seen: dict[str, Any] = {}
    for r in range(ROUNDS):
        for engine, workers in CONFIGS:
            name = f"{engine}-{workers}"
            res = _audit(drives, tmp / f"out-{name}-{r}", engine, workers)
            walls.setdefault(name, []).append(res["wall_s"])
            seen[name] = res
            print(
                f"  {name:8s} {res['wall_s']:7.1f} s  ({res['frames']} frames explained, "
                f"{res['failed']} failed)"
            )
    return walls, seen


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        t0 = time.perf_counter()
        _write_drives(logs)
        print(f"  {DRIVES} drives of {SECONDS:g} s written in {time.perf_counter() - t0:.0f} s")
        ray_start = _start_ray()
        print(f"  Ray cluster started (`ray start --head --num-cpus 2`) in {ray_start:.1f} s (not counted)")
        try:
            walls, seen = _measure(Path(tmp), sorted(logs.glob("*.sqlite")))
        finally:
            _ray("stop", "--force")
    best = {name: min(w) for name, w in walls.items()}
    frames = seen["local-1"]["frames"]
    overhead_1, overhead_2 = best["ray-1"] / best["local-1"] - 1, best["ray-2"] / best["local-2"] - 1
    figures: dict[str, object] = {
        "drives": DRIVES,
        "drive_seconds": SECONDS,
        "frames_explained": frames,
        "wall_s": {k: round(v, 2) for k, v in best.items()},
        "ray_start_s": round(ray_start, 2),
        "ray_overhead_1": round(overhead_1, 3),
        "ray_overhead_2": round(overhead_2, 3),
        "ray_scaling_2_vs_1": round(best["ray-1"] / best["ray-2"], 2),
        "local_scaling_2_vs_1": round(best["local-1"] / best["local-2"], 2),
        "serial_s_per_drive": round(best["local-1"] / DRIVES, 2),
        "serial_s_per_explained_frame": round(best["local-1"] / max(1, frames), 3),
        "same_numbers": len({repr(v["numbers"]) for v in seen.values()}) == 1,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }
    print(
        f"  Ray overhead vs local at 1 / 2 workers: {100 * overhead_1:+.1f} % / "
        f"{100 * overhead_2:+.1f} % (target <= 15 %)"
    )
    print(
        f"  Ray 2 actors vs 1: {figures['ray_scaling_2_vs_1']}x (target >= 1.7x); "
        f"local pool 2 vs serial: {figures['local_scaling_2_vs_1']}x; same numbers: {figures['same_numbers']}"
    )
    print(f"  load average while measuring: {figures['load_average_1min']} on {os.cpu_count()} CPUs")
    return figures
