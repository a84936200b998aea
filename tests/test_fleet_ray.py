"""`car fleet audit` and `--engine ray` on a real local Ray instance (2 CPUs, started once for this module).

Per drive the fleet gives exactly `car explain`'s numbers; a second run resumes per drive, a damaged one
per frame; a worker killed mid-drive loses no finished drive (its own drive is retried); `car sim eval`
and `car sim collect` give the same runs and files on Ray as on the local pool.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the fleet extra (ray) is not installed")

from car.cli import main  # noqa: E402
from car.config import CarConfig, dotted_items, with_overrides  # noqa: E402
from car.engines import EngineChoice, ray_engine  # noqa: E402
from car.sim_collect import CollectSettings, collect  # noqa: E402
from car.sim_eval import EvalSettings, evaluate  # noqa: E402
from explain.fleet import adapter  # noqa: E402
from explain.fleet.run import audit_fleet  # noqa: E402
from explain.fleet.work import ATTEMPTS_NAME, DONE_NAME, AuditSettings  # noqa: E402
from tests.fleet_support import shipped_bundle, write_shipped_drive  # noqa: E402
from tests.test_loop import bundles  # noqa: E402, F401  (the fixture is used by name)
from vision.datasets import read_manifest  # noqa: E402

SETTINGS = AuditSettings(select="all", background="sim:0@4", occlusion_frames=1, sanity_frames=1)
AUDIT_ARGS = ["--select", "all", "--background", "sim:0@4", "--occlusion-frames", "1", "--sanity-frames", "1"]


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray instance started as `--engine ray` starts one (`car.engines.ray_engine.connect`)."""
    ray_engine.connect(None, 2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fleet_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet-logs")
    bundle = shipped_bundle()
    write_shipped_drive(root / "a" / "drive.sqlite", bundle, 6, seed=3)
    write_shipped_drive(root / "b" / "drive.sqlite", bundle, 6, seed=4)
    return root


def _without_time(numbers: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in numbers.items() if k != "seconds"}


def _reference(log: Path, out: Path) -> dict[str, Any]:
    """`car explain LOG --out OUT` with the same options, in this process: its numbers and frames."""
    result = adapter.run(adapter.make_options(SETTINGS.audit_values(log, out)))
    frames = json.loads((out / "audit.json").read_text())["frames"]
    return {"numbers": _without_time(adapter.numbers_json(result)), "frames": frames}


def test_fleet_on_ray_gives_car_explain_numbers_per_drive_and_resumes(
    ray_local: None, fleet_logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "fleet"
    argv = ["fleet", "audit", str(fleet_logs), "--out", str(out), "--engine", "ray", "--workers", "2"]
    assert main([*argv, *AUDIT_ARGS, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("drives", "frames_explained", "stop_focus_mean", "flagged", "not_reproduced", "wall_s"):
        assert key in summary
    assert (summary["drives"], summary["engine"], summary["workers"], summary["failed"]) == (2, "ray", 2, 0)
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(names) == 2 and all(n.startswith("drive-") for n in names)  # same stem: path hash appended

    frames = 0
    for name in names:
        doc = json.loads((out / name / DONE_NAME).read_text())
        ref = _reference(Path(doc["summary"]["log"]), tmp_path / "ref" / name)
        assert _without_time(doc["summary"]["numbers"]) == ref["numbers"]
        assert json.loads((out / name / "audit.json").read_text())["frames"] == ref["frames"]
        assert (out / name / "report.html").is_file()
        frames += len(ref["frames"])
    assert summary["frames_explained"] == frames

    table = pq.read_table(out / "frames.parquet").to_pylist()
    assert len(table) == frames and {"drive", "bundle_sha256", "p_stop", "stop_on_can", "flagged"} <= set(
        table[0]
    )
    fleet = json.loads((out / "fleet.json").read_text())
    assert len(fleet["bundles"]) == 1 and fleet["bundles"][0]["drives"] == 2
    assert "Worst frames of the fleet" in (out / "report.html").read_text()

    # a second run resumes every drive: nothing is audited again
    attempts = {n: (out / n / ATTEMPTS_NAME).read_text() for n in names}
    assert main([*argv, *AUDIT_ARGS, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["resumed"] == 2 and again["frames_explained"] == frames
    assert {n: (out / n / ATTEMPTS_NAME).read_text() for n in names} == attempts

    # a drive interrupted mid-audit resumes from its stored frames (here on the local engine)
    victim = out / names[0]
    before = json.loads((victim / DONE_NAME).read_text())["summary"]["numbers"]
    (victim / DONE_NAME).unlink()
    stored = sorted((victim / "attributions").glob("seq_*.npz"))
    for path in stored[: len(stored) // 2]:
        path.unlink()
    result = audit_fleet([str(fleet_logs)], out, SETTINGS, engine=EngineChoice("local"))
    redone = next(d for d in result.document["drives"] if d["drive"] == names[0])
    assert redone["reused_frames"] == len(stored) - len(stored) // 2
    # equal to float32 rounding (seen: 1.2e-8 relative): the frames re-explained are batched differently
    now, then = dotted_items(_without_time(redone["numbers"])), dotted_items(_without_time(before))
    numeric = {k for k, v in then.items() if isinstance(v, float)}
    assert {k: now[k] for k in numeric} == pytest.approx({k: then[k] for k in numeric}, rel=1e-6)
    assert {k: v for k, v in now.items() if k not in numeric} == {
        k: v for k, v in then.items() if k not in numeric
    }


def _kill_one_running_drive(out: Path, names: list[str], done: threading.Event, log: dict[str, Any]) -> None:
    """Once one drive is finished and another is being audited, SIGKILL the worker auditing it."""
    while not done.is_set():
        finished = {n for n in names if (out / n / DONE_NAME).exists()}
        running = [n for n in names if (out / n / ATTEMPTS_NAME).exists() and n not in finished]
        if finished and running:
            victim = running[0]
            pid = json.loads((out / victim / ATTEMPTS_NAME).read_text().splitlines()[-1])["pid"]
            log.update(
                victim=victim, finished={n: (out / n / DONE_NAME).stat().st_mtime_ns for n in finished}
            )
            log["killed_at_ns"] = time.time_ns()
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.02)


def test_a_killed_worker_loses_no_finished_drive_and_its_drive_is_retried(
    ray_local: None, tmp_path: Path
) -> None:
    bundle = shipped_bundle()
    for i in range(3):
        write_shipped_drive(tmp_path / "logs" / f"d{i}.sqlite", bundle, 10, seed=10 + i)
    out, names = tmp_path / "fleet", ["d0", "d1", "d2"]
    done, log = threading.Event(), dict[str, Any]()
    watcher = threading.Thread(target=_kill_one_running_drive, args=(out, names, done, log))
    watcher.start()
    try:
        result = audit_fleet([str(tmp_path / "logs")], out, SETTINGS, engine=EngineChoice("ray"), workers=2)
    finally:
        done.set()
        watcher.join()
    assert "victim" in log, "no drive was caught mid-audit"
    assert result.failed == 0 and [d["drive"] for d in result.document["drives"]] == names
    for name, mtime in log["finished"].items():  # finished before the kill: kept, not audited again
        assert (out / name / DONE_NAME).stat().st_mtime_ns == mtime
        assert len((out / name / ATTEMPTS_NAME).read_text().splitlines()) == 1
    victim = log["victim"]
    if (out / victim / DONE_NAME).stat().st_mtime_ns > log["killed_at_ns"]:  # it was killed mid-audit
        assert len((out / victim / ATTEMPTS_NAME).read_text().splitlines()) >= 2
    ref = _reference(tmp_path / "logs" / f"{victim}.sqlite", tmp_path / "ref")
    doc = json.loads((out / victim / DONE_NAME).read_text())
    assert _without_time(doc["summary"]["numbers"]) == ref["numbers"]


def _config(bundle: Path) -> CarConfig:
    return with_overrides(CarConfig(), [f"model.bundle={bundle}"])


def test_sim_eval_and_collect_on_ray_equal_the_local_pool(
    ray_local: None,
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = EvalSettings(runs=3, seed=3, kinds=("can_path", "empty"))
    config = _config(bundles["always_go"])
    local = evaluate(settings, config, jobs=1)
    on_ray = evaluate(settings, config, jobs=2, engine=EngineChoice("ray"))
    assert on_ray.outcomes == local.outcomes and len(local.outcomes) == 3

    config = _config(bundles["always_stop"])
    first = collect(CollectSettings(out=tmp_path / "a", runs=2, seed=22, kinds=("empty", "dark_mat")), config)
    second = collect(
        CollectSettings(out=tmp_path / "b", runs=2, seed=22, kinds=("empty", "dark_mat")),
        config,
        jobs=2,
        engine=EngineChoice("ray"),
    )
    assert first.saved > 0 and first.to_dict() | {"out": "", "wall_seconds": 0} == second.to_dict() | {
        "out": "",
        "wall_seconds": 0,
    }
    assert (tmp_path / "a" / "manifest.jsonl").read_text() == (tmp_path / "b" / "manifest.jsonl").read_text()
    for record in read_manifest(tmp_path / "a"):
        assert (tmp_path / "a" / record.file).read_bytes() == (tmp_path / "b" / record.file).read_bytes()
