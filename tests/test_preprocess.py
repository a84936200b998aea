from pathlib import Path

import numpy as np
import pytest

from vision import imageio
from vision.preprocess import (
    Preprocessing,
    fit_to_input,
    normalise_arithmetic,
    preprocess,
    to_network_input,
)


def test_fit_to_input_centre_crops_preserving_aspect() -> None:
    img = np.zeros((240, 320, 3), np.uint8)
    img[:, 40:280] = 200  # the centred 240×240 square is bright, the side bands dark
    out = fit_to_input(img, 224)
    assert out.shape == (224, 224, 3)
    assert out.min() == 200


def test_fit_to_input_is_identity_at_size() -> None:
    img = np.random.default_rng(0).integers(0, 255, (224, 224, 3), dtype=np.uint8)
    assert fit_to_input(img) is img


def test_normalisation_matches_imagenet_formula() -> None:
    prep = Preprocessing()
    img = np.full((224, 224, 3), (255, 0, 128), np.uint8)
    x = to_network_input(img, prep)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(x[0, :, 0, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    "prep",
    [
        Preprocessing(),
        Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        Preprocessing(32, (0.1, 0.9, 0.0), (2.0, 0.01, 1.0)),
    ],
)
def test_the_level_tables_are_bit_identical_to_the_arithmetic(prep: Preprocessing) -> None:
    """Every uint8 level of every channel, and a random batch with a strided (non-contiguous) view."""
    size = prep.input_size
    levels = np.arange(256, dtype=np.uint8)
    every = np.zeros((1, size, size, 3), np.uint8)
    every.reshape(-1, 3)[:256] = levels[:, None]
    assert np.array_equal(to_network_input(every, prep), normalise_arithmetic(every, prep))
    rng = np.random.default_rng(7)
    batch = rng.integers(0, 256, (5, size, 2 * size, 3), dtype=np.uint8)[:, :, ::2]
    got = to_network_input(batch, prep)
    assert got.flags.c_contiguous and got.dtype == np.float32 and got.shape == (5, 3, size, size)
    assert np.array_equal(got, normalise_arithmetic(batch, prep))


def test_channel_order_survives_disk_round_trip(tmp_path: Path) -> None:
    """A pure-red image written and read back is red in channel 0: no BGR/RGB mix-up anywhere."""
    red = np.zeros((224, 224, 3), np.uint8)
    red[..., 0] = 250
    path = tmp_path / "0_red.png"
    imageio.write_rgb(path, red)
    back = imageio.read_rgb(path)
    np.testing.assert_array_equal(back, red)
    x = preprocess(back, Preprocessing())
    assert x[0, 0].mean() > 1.5 and x[0, 2].mean() < -1.5


def test_wrong_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        fit_to_input(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="fit_to_input"):
        to_network_input(np.zeros((1, 100, 100, 3), np.uint8), Preprocessing())
