"""`python -m vision.still_check`: the same frames for every model, counted per set; bad input is one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vision.bundle import DEFAULT_BUNDLE
from vision.still_check import DIAGNOSIS_SETS, main


def test_two_copies_of_one_model_make_the_same_errors_on_the_same_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    assert main([str(DEFAULT_BUNDLE), str(copy), "--scale", "0.002", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] == 0.7
    assert [s["name"] for s in report["sets"]] == [s.name for s in DIAGNOSIS_SETS]
    for counted in report["sets"]:
        assert counted["frames"] > 0
        assert 0 <= counted["flat_bright"] <= counted["frames"]
        first, second = counted["errors"].values()
        assert first == second <= counted["frames"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "1.5"], "--threshold 1.5: must lie between 0 and 1"),
        (["--scale", "0"], "--scale 0.0: must lie in (0, 1]"),
    ],
)
def test_bad_options_exit_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(DEFAULT_BUNDLE), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_bundle_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no such model bundle folder" in err and "\n" not in err
