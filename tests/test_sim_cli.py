"""`car sim demo` and `car sim eval`'s lazy hand-over."""

from pathlib import Path

import cv2
import pytest

import car.commands.sim as sim_command
from car.cli import main
from vision.imageio import read_rgb


def test_demo_writes_a_playable_video_and_a_contact_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert main(["sim", "demo", "--out", str(out), "--fps", "10", "--speed", "1.0"]) == 0
    printed = capsys.readouterr().out
    assert "stopped" in printed and "collided: no" in printed
    video = cv2.VideoCapture(str(out / "demo.mp4"))
    try:
        frames = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = video.read()
    finally:
        video.release()
    assert ok and first.shape == (224, 224, 3) and frames > 10
    sheet = read_rgb(out / "contact_sheet.png")
    assert sheet.shape[1] == 4 * 226 and sheet.shape[0] >= 226


def test_demo_rejects_a_bad_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "demo", "--out", str(tmp_path), "--speed", "1.5"]) == 2
    assert "speed" in capsys.readouterr().err


def test_eval_options_go_to_car_sim_eval(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "eval", "--help"])
    assert exc.value.code == 0
    assert "car sim eval" in capsys.readouterr().out


def test_eval_says_when_it_is_not_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sim_command, "SIM_EVAL_MODULE", "car.no_such_sim_eval")
    assert main(["sim", "eval", "--runs", "1"]) == 2
    assert "not available yet" in capsys.readouterr().err


def test_collect_options_go_to_car_sim_collect(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "collect", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "car sim collect" in out and "--keep" in out and "wrong,error=0.3,every=30" in out


def test_collect_says_when_it_is_not_built(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sim_command, "SIM_COLLECT_MODULE", "car.no_such_sim_collect")
    assert main(["sim", "collect", "--runs", "1"]) == 2
    assert "`car sim collect` is not available yet" in capsys.readouterr().err
