"""`car sim dataset` end to end, and the hard negatives fooling the intensity baseline."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from car.cli import main
from vision.baseline import IntensityBaseline
from vision.datasets import load_dataset, read_manifest, scan_folder
from vision.metrics import classification_report
from vision.sim import HARD_NEGATIVE_KINDS, WorldConfig
from vision.sim.dataset import generate_frame, write_dataset

NAME = re.compile(r"^[01]_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.jpg$")


def test_dataset_command_writes_frames_masks_manifest_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "set"
    assert main(["sim", "dataset", "--out", str(out), "--n", "24", "--seed", "3", "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "wrote 24 frames" in summary and "scene kinds" in summary and "STOP" in summary
    images = sorted(p.name for p in out.glob("*.jpg"))
    assert len(images) == 24 and all(NAME.match(name) for name in images)
    records = read_manifest(out)
    assert sorted(r.file for r in records) == images
    for record in records:
        assert record.file.startswith(f"{record.label}_")
        if record.mask is not None:
            assert (out / record.mask).is_file() and record.scene.startswith("can_")
        if record.label == 1:
            assert record.distance_m is not None and record.distance_m <= WorldConfig().stop_distance_m
    scan = scan_folder(out)
    assert len(scan.items) == 24 and not scan.skipped  # masks/, the manifest, dataset.json are not frames
    made_by = json.loads((out / "dataset.json").read_text())
    assert made_by["command"] and made_by["created_utc"].endswith("Z")
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?|unknown \(not a git checkout\)", made_by["code_version"])
    data = load_dataset(out)
    with_mask = [m for m in data.masks() if m is not None]
    assert with_mask and all(m.any() for m in with_mask)
    assert sum(scan.label_counts()) == 24


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", 6, seed=9, progress=False)
    b = write_dataset(tmp_path / "b", 6, seed=9, progress=False)
    names_a = sorted(p.name for p in (tmp_path / "a").glob("*.jpg"))
    assert names_a == sorted(p.name for p in (tmp_path / "b").glob("*.jpg"))
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names_a)
    assert a.by_label == b.by_label and sum(a.by_label) == 6


def test_refuses_a_folder_with_frames_and_bad_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(tmp_path, 2, seed=0, progress=False)
    assert main(["sim", "dataset", "--out", str(tmp_path), "--n", "2", "--no-progress"]) == 2
    assert "already holds frames" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sim", "dataset", "--out", str(tmp_path / "x"), "--n", "2", "--kinds", "teapot=1"])


def test_kind_weights_and_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sim", "dataset", "--out", str(tmp_path / "s"), "--n", "5", "--kinds", "empty", "--json"]
    assert main(args) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n"] == 5 and payload["go"] == 5 and payload["kinds"] == {"empty": 5}


def test_hard_negatives_fool_the_baseline_but_cans_do_not_escape_it() -> None:
    config = WorldConfig()
    baseline = IntensityBaseline()
    hard = {kind: 1.0 for kind in HARD_NEGATIVE_KINDS}
    frames = [generate_frame(config, 21, i, hard) for i in range(40)]
    assert all(f.truth.label == 0 for f in frames)
    fooled = np.mean([baseline.predict(f.rgb) == 1 for f in frames])
    assert fooled > 0.5, f"only {fooled:.0%} of hard negatives look like STOP to the baseline"
    cans = [generate_frame(config, 22, i, {"can_path": 1.0}) for i in range(30)]
    caught = np.mean([baseline.predict(f.rgb) == 1 for f in cans])
    assert caught > 0.75, "the baseline must still see most near cans (it is a real baseline)"


def test_baseline_accuracy_on_the_default_mix_leaves_room_for_the_cnn() -> None:
    config = WorldConfig()
    frames = [generate_frame(config, 5, i) for i in range(160)]
    labels = [f.truth.label for f in frames]
    assert 0.25 < np.mean(labels) < 0.6  # balanced enough
    predictions = IntensityBaseline().predict_batch(np.stack([f.rgb for f in frames]))
    report = classification_report(labels, predictions)
    assert 0.5 < report.accuracy <= 0.85, report.format_table()


def test_provenance_command_line_is_shell_ready() -> None:
    from vision.provenance import command_line

    assert (
        command_line(["/venv/bin/car", "sim", "dataset", "--out", "my set"])
        == "car sim dataset --out 'my set'"
    )
