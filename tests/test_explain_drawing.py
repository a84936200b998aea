"""The reports' colour map is shap's `red_transparent_blue`, without importing shap to draw it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from explain.drawing import colour_bar, colour_map, red_transparent_blue


def test_colour_table_equals_shaps_own() -> None:
    colors = pytest.importorskip("shap.plots.colors")
    values = np.concatenate([np.linspace(0.0, 1.0, 20001), [-0.5, 1.5, 0.5]])
    assert np.abs(red_transparent_blue(values) - colors.red_transparent_blue(values)).max() < 1e-12


def test_drawing_a_map_does_not_import_shap() -> None:
    code = (
        "import sys, numpy as np\n"
        "from explain.drawing import colour_map, colour_bar\n"
        "colour_map(np.zeros((4, 4)), np.zeros((4, 4)), 1.0); colour_bar(8)\n"
        "print('shap' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_positive_is_red_negative_is_blue_zero_is_the_frame() -> None:
    grey = np.full((1, 3), 100.0)
    pixels = colour_map(np.array([[1.0, -1.0, 0.0]]), grey, 1.0)[0]
    assert pixels[0, 0] > pixels[0, 2] and pixels[1, 2] > pixels[1, 0]
    assert tuple(pixels[2]) == (231, 231, 231)  # 0.85 white + 0.15 of the grey frame, nothing over it
    bar = colour_bar(9, 2)
    assert bar.shape == (2, 9, 3) and bar[0, 0, 2] > bar[0, 0, 0] and bar[0, -1, 0] > bar[0, -1, 2]
