"""The same fleet of drives audited serially, on the local process pool and on Ray, side by side.

Ten short simulated drives (`car drive --duration 8`, scenes of seeds 0-9, shipped `edge-sim`) are written
once; then `car fleet audit` (library call, one torch thread per worker) runs on: the local engine with
1 worker (serial, in this process), Ray with 1 actor, the local pool with 2 processes, Ray with 2 actors,
in that interleaved order, each into a fresh folder. Ray is started once before the timed runs (as an
existing cluster would be); its start-up is reported apart. Reported: wall time per configuration, Ray's
overhead against the local engine at the same worker count (target ≤ 15 %), Ray 2 actors against 1
(target ≥ 1.7× on 2 cores), the per-drive and per-explained-frame cost, and equal numbers everywhere.

Environment knobs: BENCH_FLEET_DRIVES (10), BENCH_FLEET_SECONDS (8 s per drive), BENCH_FLEET_ROUNDS (1).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DRIVES = int(os.environ.get("BENCH_FLEET_DRIVES", "10"))
SECONDS = float(os.environ.get("BENCH_FLEET_SECONDS", "8"))
ROUNDS = int(os.environ.get("BENCH_FLEET_ROUNDS", "1"))
CONFIGS = (("local", 1), ("ray", 1), ("local", 2), ("ray", 2))


def _write_drives(folder: Path) -> None:
    """Two `car drive` processes at a time (each runs in real time, mostly waiting for its clock)."""
    car = [sys.executable, "-c", "import sys; from car.cli import main; sys.exit(main())", "drive"]
    pending = list(range(DRIVES))
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = [
            subprocess.Popen(
                [
                    *car,
                    "--duration",
                    f"{SECONDS:g}",
                    "--log",
                    str(folder / f"drive{i:02d}.sqlite"),
                    "--set",
                    f"sim.seed={i}",
                    "--set",
                    "sim.scene=random",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in batch
        ]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"car drive failed: {err.decode().strip().splitlines()[-1:]}")


def _audit(logs: Path, out: Path, engine: str, workers: int) -> dict[str, Any]:
    from car.engines import EngineChoice
    from explain.fleet.run import audit_fleet
    from explain.fleet.work import AuditSettings

    settings = AuditSettings(background="sim:0@25", occlusion_frames=2, sanity_frames=1)
    t0 = time.perf_counter()
    result = audit_fleet([str(logs)], out, settings, engine=EngineChoice(engine), workers=workers)
    wall = time.perf_counter() - t0
    summary = result.summary_json()
    numbers = [
        (d["drive"], d["numbers"]["frames_explained"], d["numbers"]["flagged"])
        for d in result.document["drives"]
    ]
    return {
        "wall_s": wall,
        "frames": summary["frames_explained"],
        "failed": summary["failed"],
        "numbers": numbers,
    }


def _start_ray() -> float:
    from car.engines.ray_engine import connect

    t0 = time.perf_counter()
    connect(None, 2)
    return time.perf_counter() - t0


def run() -> dict[str, object]:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        t0 = time.perf_counter()
        _write_drives(logs)
        print(f"  {DRIVES} drives of {SECONDS:g} s written in {time.perf_counter() - t0:.0f} s")
        ray_start = _start_ray()
        print(f"  Ray started locally in {ray_start:.1f} s (not counted below)")
        walls: dict[str, list[float]] = {}
        seen: dict[str, Any] = {}
        for r in range(ROUNDS):
            for engine, workers in CONFIGS:
                name = f"{engine}-{workers}"
                res = _audit(logs, Path(tmp) / f"out-{name}-{r}", engine, workers)
                walls.setdefault(name, []).append(res["wall_s"])
                seen[name] = res
                print(
                    f"  {name:8s} {res['wall_s']:7.1f} s  ({res['frames']} frames explained, "
                    f"{res['failed']} failed)"
                )
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
