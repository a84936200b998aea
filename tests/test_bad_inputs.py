"""Bad inputs a new user tried, built as they were: tiny images, a one-class folder; each is one clear
line on stderr with exit 2, and no progress bar is printed ahead of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from car.cli import main
from vision.imageio import write_rgb


def folder_of(root: Path, side: int, labels: tuple[int, ...]) -> Path:
    root.mkdir(parents=True)
    for i, label in enumerate(labels):
        write_rgb(root / f"{label}_{i:03d}.png", np.full((side, side, 3), 40 + 30 * i, np.uint8))
    return root


def error_only(err: str, command: str) -> str:
    """The one-line error, and nothing that looks like a progress bar before it."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"car {command}: error: ")]
    assert len(errors) == 1, err
    before = err[: err.index(errors[0])]
    assert "%|" not in before and "img/s" not in before and "it/s" not in before, err
    return errors[0]


@pytest.mark.parametrize("command", ["baseline", "train"])
def test_ten_pixel_images_are_reported_as_too_small_not_undecodable(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = folder_of(tmp_path / "tiny", 10, (0, 1, 0, 1, 0, 1))
    argv = [command, str(data)] + (
        ["--out", str(tmp_path / "bundle"), "--epochs", "1"] if command == "train" else []
    )
    assert main(argv) == 2
    line = error_only(capsys.readouterr().err, command)
    assert "6 under the 32 px minimum" in line and "could not be decoded" not in line
    assert str(data) in line


def test_train_refuses_a_folder_with_one_class_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = folder_of(tmp_path / "go_only", 64, (0, 0, 0, 0))
    assert main(["train", str(data), "--out", str(tmp_path / "bundle"), "--epochs", "1"]) == 2
    line = error_only(capsys.readouterr().err, "train")
    assert "every frame is GO" in line and "both classes" in line and "add STOP frames" in line
    assert not (tmp_path / "bundle").exists()
