"""The audit against the drive it audits: a 60-second, 30 Hz simulated drive, then `car explain` on it.

Both run as the user runs them, in fresh processes: `car drive --duration 60` with the default simulation
config (shipped bundle, real-time 30 Hz loop, virtual microcontroller on a pty), then
`car explain DRIVE --out DIR --json` with its defaults (`--select auto`, 100 background frames, both
outputs). Reported: the drive's length, the audit's wall time (start-up and report included) and its own
per-step timings, frames explained, peak memory. Target (README): the audit takes less time than the drive.

Environment knob: BENCH_AUDIT_SECONDS (default 60) for a shorter or longer drive.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench import car_command

DRIVE_SECONDS = float(os.environ.get("BENCH_AUDIT_SECONDS", "60"))


def _timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"car {' '.join(cmd[3:5])} failed (exit {done.returncode}): {tail[0]}")
    return elapsed, done


def run() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        log, out = Path(tmp) / "drive.sqlite", Path(tmp) / "audit"
        drive_s, _ = _timed(car_command("drive", "--duration", f"{DRIVE_SECONDS:g}", "--log", str(log)))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        audit_s, done = _timed(car_command("explain", str(log), "--out", str(out), "--json"))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        numbers = json.loads(done.stdout)
        steps = json.loads((out / "audit.json").read_text())["timings_s"]
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures: dict[str, object] = {
        "drive_s": DRIVE_SECONDS,
        "drive_wall_s": round(drive_s, 2),
        "frames_total": numbers["frames_total"],
        "frames_explained": numbers["frames_explained"],
        "audit_wall_s": round(audit_s, 2),
        "audit_cpu_s": round(cpu_s, 2),
        "audit_peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "steps_s": {k: round(float(v), 2) for k, v in steps.items()},
        "audit_faster_than_drive": audit_s < DRIVE_SECONDS,
    }
    print(f"  drive: {DRIVE_SECONDS:g} s simulated in real time, {numbers['frames_total']} frames")
    print(
        f"  audit: {audit_s:.1f} s wall ({cpu_s:.0f} CPU-s), {numbers['frames_explained']} frames explained, "
        f"peak RSS {figures['audit_peak_rss_mb']} MB"
    )
    print("  steps: " + ", ".join(f"{k} {float(v):.1f} s" for k, v in steps.items()))
    met = bool(figures["audit_faster_than_drive"])
    relation = "<" if met else ">="
    print(
        f"  audit faster than the drive it audits: {'met' if met else 'NOT met'} "
        f"({audit_s:.1f} s {relation} {DRIVE_SECONDS:g} s)"
    )
    return figures
