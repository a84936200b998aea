"""The intensity baseline: the published rule exactly, and `car baseline` on a tiny hand-made set."""

import json
from pathlib import Path

import numpy as np
import pytest

from car.cli import main
from vision.baseline import IntensityBaseline, grey, mean_intensities
from vision.errors import VisionError
from vision.imageio import read_rgb, write_rgb

SIDE = 224
PIXELS = SIDE * SIDE


def _image_with_dark_pixels(n_dark: int, dark: int = 60, light: int = 61) -> np.ndarray:
    """Grey image with exactly `n_dark` pixels at grey level `dark`, the rest at `light`."""
    flat = np.full(PIXELS, light, dtype=np.uint8)
    flat[:n_dark] = dark
    return np.repeat(flat.reshape(SIDE, SIDE, 1), 3, axis=2)


def test_rule_dark_is_at_most_cutoff_and_stop_is_strictly_more_than_share() -> None:
    baseline = IntensityBaseline()
    # 0.065 × 50176 pixels = 3261.4: 3262 dark pixels (share 0.06501) is STOP, 3261 (0.06499) is GO
    assert baseline.predict(_image_with_dark_pixels(3262)) == 1
    assert baseline.predict(_image_with_dark_pixels(3261)) == 0
    assert baseline.dark_share(_image_with_dark_pixels(100, dark=61, light=200)) == 0.0  # 61 is not dark
    assert grey(np.full((2, 2, 3), 37, np.uint8)).tolist() == [[37, 37], [37, 37]]
    # colour weights of OpenCV's RGB2GRAY: pure blue 255 is grey 29 (dark), pure green is 150
    blue = np.zeros((4, 4, 3), np.uint8)
    blue[..., 2] = 255
    assert baseline.dark_share(blue) == 1.0
    assert IntensityBaseline(cutoff=20).dark_share(blue) == 0.0
    batch = np.stack([_image_with_dark_pixels(0), _image_with_dark_pixels(PIXELS)])
    assert baseline.predict_batch(batch).tolist() == [0, 1]
    assert mean_intensities(batch).tolist() == [61.0, 60.0]


def test_bad_parameters() -> None:
    with pytest.raises(VisionError, match="cutoff"):
        IntensityBaseline(cutoff=256)
    with pytest.raises(VisionError, match="share"):
        IntensityBaseline(share=1.5)


# the hand-made set: (label, dark pixels); lossless PNGs so the shares are exact
HAND_MADE = [
    ("0_a", 0),  # GO, predicted GO
    ("0_b", 1000),  # GO, GO
    ("0_c", 3260),  # GO, GO (just under the share)
    ("0_d", 20000),  # GO, STOP  (a "dark mat")
    ("1_e", 40000),  # STOP, STOP
    ("1_f", 3262),  # STOP, STOP (just over)
    ("1_g", 500),  # STOP, GO   (a small far can)
    ("1_h", 30000),  # STOP, STOP
]


@pytest.fixture
def hand_made(tmp_path: Path) -> Path:
    for stem, dark in HAND_MADE:
        write_rgb(tmp_path / f"{stem}.png", _image_with_dark_pixels(dark, dark=20, light=180))
    return tmp_path


def test_command_json_numbers_by_hand(hand_made: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", str(hand_made), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # confusion [[3, 1], [1, 3]]: accuracy 6/8; GO precision 3/4, recall 3/4; STOP the same
    assert result["confusion"] == [[3, 1], [1, 3]]
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["precision"] == pytest.approx(0.75)
    assert result["recall"] == pytest.approx(0.75)
    assert result["n"] == 8 and result["cutoff"] == 60 and result["share"] == 0.065


def test_command_options_change_the_rule(hand_made: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a larger share (0.1 = 5018 pixels) turns 1_f (3262 dark pixels) into GO
    assert main(["baseline", str(hand_made), "--json", "--share", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["confusion"] == [[3, 1], [2, 2]]
    # a cutoff below the dark level (20) makes every frame GO
    assert main(["baseline", str(hand_made), "--json", "--cutoff", "19"]) == 0
    assert json.loads(capsys.readouterr().out)["confusion"] == [[4, 0], [4, 0]]


def test_command_table_and_plots(hand_made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "plots"
    assert main(["baseline", str(hand_made), "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "accuracy   0.7500" in out and "confusion" in out
    for name in ("confusion.png", "intensity_boxplot.png"):
        image = read_rgb(plots / name)
        assert image.shape[0] > 100 and image.std() > 5


def test_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["baseline", str(tmp_path), "--cutoff", "300"])
    assert exc.value.code == 2
