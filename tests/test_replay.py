"""Replay: the same bundle reproduces every logged decision (hysteresis included); another does not;
a changed bundle is refused; the video renders; the log plays back as a frame source; `car log` works."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from car.cli import main
from car.config import CarConfig
from car.drivelog import DriveLogReader
from car.errors import CarError
from car.replay import render_video, replay
from car.run_drive import drive
from tests.test_loop import bundles, quiet, sim_config  # noqa: F401  (the fixture is used by name)
from vision.datasets import scan_folder
from vision.labels import GO, STOP


def mixed_policy(bundle: Path) -> tuple[str, ...]:
    """Policy settings that put the random network's threshold in the middle of what it outputs on this
    drive's frames, so decisions change often and the replay must reproduce the hysteresis too."""
    from car.sim_world import make_world
    from vision.bundle import load_bundle
    from vision.detector import OnnxDetector
    from vision.preprocess import preprocess

    loaded = load_bundle(bundle)
    detector = OnnxDetector(loaded)
    world = make_world(CarConfig().sim.seed, CarConfig().sim.scene)
    p_stop = []
    for _ in range(30):
        world.step(0.25, 1 / 30)
        rgb, _truth = world.render()
        p_stop.append(float(detector.predict(preprocess(rgb, loaded.manifest.preprocessing))[0, 1]))
    lo, mid, hi = np.percentile(p_stop, [20, 50, 80])
    margin = max((hi - lo) / 8, 1e-6)
    return (f"policy.threshold={mid}", f"policy.go_margin={margin}", "policy.go_frames=2")


@pytest.fixture(scope="module")
def mixed_drive(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    path = tmp_path_factory.mktemp("replay") / "mixed.sqlite"
    settings = mixed_policy(bundles["random"])
    drive(sim_config(bundles["random"], "loop.duration_s=1.5", *settings), log_path=path, out=quiet)
    return path


def test_replay_reproduces_every_decision(mixed_drive: Path) -> None:
    with DriveLogReader(mixed_drive) as log:
        framed = [r for r in log.records(images=False) if r.frame_seq is not None]
    labels = {r.decision.label for r in framed}
    assert labels == {GO, STOP}, "the drive must contain both decisions for this test to mean something"
    result = replay(mixed_drive)
    assert result.frames == len(framed)  # every logged frame (how many: the loop's rate on a busy machine)
    assert result.agree == result.frames and result.disagree == 0
    assert result.max_abs_prob_diff == 0.0
    assert result.bundle_matches_log


def test_replay_with_another_bundle_disagrees(mixed_drive: Path, bundles: dict[str, Path]) -> None:  # noqa: F811
    result = replay(mixed_drive, model=bundles["always_go"])
    assert not result.bundle_matches_log
    assert result.disagree > 0 and result.agree + result.disagree == result.frames


def test_changed_bundle_is_refused(mixed_drive: Path, bundles: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    copy = tmp_path / "log.sqlite"
    shutil.copy(mixed_drive, copy)
    moved = tmp_path / "bundle"
    shutil.copytree(bundles["random"], moved)
    with DriveLogReader(copy) as log:
        assert Path(log.meta.bundle_path) == bundles["random"].resolve()
    # point the log at a bundle whose manifest differs from the one that drove
    manifest = moved / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["threshold"] = 0.6
    manifest.write_text(json.dumps(doc))
    import sqlite3

    conn = sqlite3.connect(copy)
    conn.execute("UPDATE run SET bundle_path = ?", (str(moved),))
    conn.commit()
    conn.close()
    with pytest.raises(CarError, match="changed since the drive"):
        replay(copy)
    conn = sqlite3.connect(copy)
    conn.execute("UPDATE run SET bundle_path = ?", (str(tmp_path / "gone"),))
    conn.commit()
    conn.close()
    with pytest.raises(CarError, match="pass --model"):
        replay(copy)


def test_cli_json_video_and_log_commands(
    mixed_drive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "drive.mp4"
    assert main(["replay", str(mixed_drive), "--json", "--video", str(video)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["frames"] == doc["agree"] and doc["disagree"] == 0
    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    with DriveLogReader(mixed_drive) as log:
        assert n == len(log)
    assert ok and frame.shape == (224 * 2 + 64, 224 * 2, 3)

    assert main(["log", "info", str(mixed_drive), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == doc["frames"] and info["ended_cleanly"] is True
    assert info["ground_truth"] == {"GO": doc["frames"]}
    # why the policy decided what it did, counted per reason: as many as there were decisions
    assert sum(info["reasons"].values()) == sum(info["decisions"].values())
    assert "go_confident" in info["reasons"]

    out = tmp_path / "frames"
    assert main(["log", "export", str(mixed_drive), "--frames", str(out)]) == 0
    scan = scan_folder(out)
    assert len(scan.items) == doc["frames"]
    assert scan.label_counts() == (doc["frames"], 0)  # labels come from the ground truth (can far ahead)

    assert main(["replay", str(tmp_path / "missing.sqlite")]) == 2
    assert "no such drive log" in capsys.readouterr().err


def test_drive_log_as_a_frame_source(mixed_drive: Path, bundles: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "again.sqlite"
    with DriveLogReader(mixed_drive) as log:
        policy = log.meta.config()["policy"]
    assert isinstance(policy, dict)
    settings = [f"policy.{key}={value}" for key, value in policy.items()]
    config = sim_config(bundles["random"], "source.kind=replay", f"source.path={mixed_drive}", *settings)
    result = drive(config, log_path=out, out=quiet)
    assert result.summary.end_reason == "end of stream"
    with DriveLogReader(mixed_drive) as a, DriveLogReader(out) as b:
        first = [r for r in a.records() if r.rgb is not None]
        second = [r for r in b.records() if r.rgb is not None]
        assert len(second) == len(first)
        assert all((x.rgb == y.rgb).all() for x, y in zip(first, second, strict=True))
        assert [x.probs for x in first] == [y.probs for y in second]
        assert second[0].truth is not None


def test_render_video_counts_frames(mixed_drive: Path, tmp_path: Path) -> None:
    n = render_video(mixed_drive, tmp_path / "sub" / "v.mp4", fps=10)
    assert n > 0 and (tmp_path / "sub" / "v.mp4").stat().st_size > 1000


def test_a_log_from_before_the_stop_memory_replays_without_it(mixed_drive: Path) -> None:
    """Logs record the whole config; one written before `policy.stop_memory_frames` existed drove without
    the memory, so replay must not apply today's default to it."""
    import dataclasses

    from car.replay import logged_policy_config

    with DriveLogReader(mixed_drive) as log:
        meta = log.meta
    assert logged_policy_config(meta).stop_memory_frames == 15
    doc = json.loads(meta.config_json)
    del doc["policy"]["stop_memory_frames"]
    old = dataclasses.replace(meta, config_json=json.dumps(doc))
    assert logged_policy_config(old).stop_memory_frames == 0
