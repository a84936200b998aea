"""Training: the published recipe, deterministic for a seed, one preprocessing path end to end."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from vision.augment import ColorJitter, SensorAugment, training_augmentations
from vision.errors import VisionError
from vision.imageio import write_rgb
from vision.preprocess import Preprocessing
from vision.training import TrainConfig, evaluate_loss, split_indices, train_network


def coloured_frames(n: int, seed: int, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """GO frames are blue-dominant, STOP frames red-dominant (a BGR/RGB swap would invert every label)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    strong = rng.integers(150, 230, n).astype(np.uint8)
    images[labels == 1, :, :, 0] += strong[labels == 1, None, None]
    images[labels == 0, :, :, 2] += strong[labels == 0, None, None]
    return images, labels


def write_folder(root: Path, n: int, seed: int, size: int = 240) -> Path:
    """A real-looking folder in the published naming `{label}_{uuid}.jpg` (320×240-ish frames)."""
    root.mkdir(parents=True, exist_ok=True)
    images, labels = coloured_frames(n, seed, size)
    rng = np.random.default_rng(seed + 1000)
    for image, label in zip(images, labels, strict=True):
        name = uuid.UUID(int=int(rng.integers(0, 2**63)), version=4)
        write_rgb(root / f"{label}_{name}.jpg", image)
    return root


TINY = TrainConfig(arch="edge", epochs=1, batch_size=8, seed=3, threads=1, progress=False)


def test_split_is_80_20_seeded_and_disjoint() -> None:
    a = split_indices(50, 0.2, seed=1)
    b = split_indices(50, 0.2, seed=1)
    c = split_indices(50, 0.2, seed=2)
    assert len(a.val) == 10 and len(a.train) == 40
    assert not set(a.val) & set(a.train)
    assert sorted([*a.val, *a.train]) == list(range(50))
    np.testing.assert_array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)
    with pytest.raises(VisionError, match="at least 2"):
        split_indices(1, 0.2, seed=0)


def test_colour_jitter_is_seeded_and_keeps_uint8_rgb() -> None:
    img = coloured_frames(1, 0)[0][0]
    jitter = ColorJitter()
    a = jitter(img, np.random.default_rng(5))
    b = jitter(img, np.random.default_rng(5))
    c = jitter(img, np.random.default_rng(6))
    assert a.dtype == np.uint8 and a.shape == img.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, img)
    np.testing.assert_array_equal(ColorJitter(0, 0, 0, 0)(img, np.random.default_rng(0)), img)


def test_training_is_deterministic_for_a_seed() -> None:
    images, labels = coloured_frames(12, 0)
    first = train_network(images, labels, TINY)
    again = train_network(images, labels, TINY)
    other = train_network(
        images, labels, TrainConfig(arch="edge", epochs=1, batch_size=8, seed=4, threads=1, progress=False)
    )
    for name, tensor in first.network.state_dict().items():
        assert torch.equal(tensor, again.network.state_dict()[name]), name
    assert first.history == again.history or [h.val_loss for h in first.history] == [
        h.val_loss for h in again.history
    ]
    assert any(
        not torch.equal(t, other.network.state_dict()[n]) for n, t in first.network.state_dict().items()
    )


def test_keeps_the_epoch_with_the_lowest_validation_loss() -> None:
    images, labels = coloured_frames(16, 1)
    config = TrainConfig(
        arch="edge", epochs=3, batch_size=8, seed=0, learning_rate=3e-3, threads=1, progress=False
    )
    result = train_network(images, labels, config)
    losses = [h.val_loss for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    val_loss, _ = evaluate_loss(result.network, images[result.split.val], labels[result.split.val], _prep())
    assert val_loss == pytest.approx(losses[result.best_epoch - 1], rel=1e-5)


def _prep() -> Preprocessing:

    return Preprocessing()


def published_draws(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The published recipe's augmentation of a batch: ColorJitter on each image in turn, one generator."""
    return np.stack([ColorJitter()(img, rng) for img in images])


def test_sensor_augment_is_seeded_label_free_and_optional() -> None:
    images = coloured_frames(4, 0)[0]
    always = SensorAugment(probability=1.0, each=1.0)
    a = always(images[0], np.random.default_rng(5))
    np.testing.assert_array_equal(a, always(images[0], np.random.default_rng(5)))
    assert a.dtype == np.uint8 and a.shape == images[0].shape and not np.array_equal(a, images[0])
    never = SensorAugment(probability=0.0)
    np.testing.assert_array_equal(never(images[0], np.random.default_rng(5)), images[0])
    # without sensor effects the chain draws exactly what the published recipe drew (old bundles reproduce)
    np.testing.assert_array_equal(
        training_augmentations(True).batch(images, np.random.default_rng(7)),
        published_draws(images, np.random.default_rng(7)),
    )
    assert training_augmentations(False).describe() == "none"
    assert (
        training_augmentations(True, {"sensor": 0.5}).describe().startswith("SensorAugment(probability=0.5")
    )
    with pytest.raises(ValueError, match="unknown"):
        SensorAugment(effects=("sunburn",))
    with pytest.raises(ValueError, match="each"):
        SensorAugment(each=2.0)
    with pytest.raises(VisionError, match="sensor-augment"):
        train_network(*coloured_frames(4, 0), TrainConfig(shares={"sensor": 1.5}, progress=False))


def test_bad_training_input_is_a_clear_error() -> None:
    with pytest.raises(VisionError, match="RGB uint8"):
        train_network(np.zeros((4, 100, 100, 3), np.uint8), np.zeros(4, np.int64), TINY)
    with pytest.raises(VisionError, match="epochs"):
        train_network(*coloured_frames(4, 0), TrainConfig(epochs=0, progress=False))


def test_car_train_writes_a_bundle_whose_live_path_sees_the_same_colours(tmp_path: Path) -> None:
    """Train on files, then run the car's path (read file → preprocess → ONNX detector) on fresh files.

    Classes differ only in red vs blue: if training, export or inference read BGR anywhere, the live
    accuracy would collapse to ~0 instead of ~1.
    """
    from car.commands import evaluate, train

    data = write_folder(tmp_path / "train", 30, seed=0)
    test = write_folder(tmp_path / "test", 16, seed=50)
    out = tmp_path / "models" / "colour"
    args = argparse.Namespace(
        data=data,
        arch="edge",
        out=out,
        epochs=3,
        seed=0,
        batch_size=8,
        lr=3e-3,
        limit=None,
        threads=None,
        no_int8=False,
        no_augment=False,
        json=True,
    )
    assert train.run(args) == 0
    from vision.bundle import load_bundle

    bundle = load_bundle(out)
    summary = bundle.manifest.data
    assert (summary.n_total, summary.n_train, summary.n_val) == (30, 24, 6)
    assert (summary.n_go, summary.n_stop) == (15, 15)
    assert "ColorJitter" in summary.augmentation
    assert bundle.manifest.metrics.best_epoch in (1, 2, 3)
    assert bundle.has("onnx_int8") and bundle.manifest.metrics.int8_accuracy_delta is not None
    for runtime in ("onnx", "torch", "onnx-int8"):
        result = evaluate.evaluate(out, test, runtime=runtime, with_baseline=False)
        assert result.network.accuracy >= 0.9, (runtime, result.network)


def test_limit_takes_a_seeded_random_subset_not_the_first_names(tmp_path: Path) -> None:
    """Names start with the label, so the first N files by name would all be GO."""
    from vision.export import load_labelled_frames

    folder = write_folder(tmp_path / "f", 20, seed=4)
    a = load_labelled_frames(folder, 224, limit=8, seed=0)
    b = load_labelled_frames(folder, 224, limit=8, seed=0)
    assert len(a) == 8 and a.labels is not None and set(a.labels.tolist()) == {0, 1}
    np.testing.assert_array_equal(a.images, b.images)
    assert len(load_labelled_frames(folder, 224)) == 20


def test_car_train_reads_several_folders_as_one_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`car train A B`: both folders in place, split as one set; the bundle's data summary lists each."""
    from car.cli import main
    from vision.bundle import load_bundle

    first = write_folder(tmp_path / "base", 12, seed=7)
    second = write_folder(tmp_path / "collected", 6, seed=8)
    out = tmp_path / "models" / "two"
    argv = ["train", str(first), str(second), "--out", str(out), "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, "--no-int8", "--threads", "1", "--json"]) == 0
    summary = load_bundle(out).manifest.data
    assert (summary.n_total, summary.n_go, summary.n_stop) == (18, 9, 9)
    assert (summary.n_train, summary.n_val) == (14, 4)
    assert summary.source == f"{first} (12: GO 6, STOP 6) + {second} (6: GO 3, STOP 3)"
    capsys.readouterr()
    assert main(["train", str(first), str(first), "--out", str(tmp_path / "x"), "--epochs", "1"]) == 2
    assert "the same folder as" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_room_colours_repaint_the_room_and_keep_the_black_can() -> None:
    from vision.augment import RoomColours

    rng = np.random.default_rng(0)
    room = np.zeros((32, 32, 3), np.uint8)
    room[:16] = (200, 120, 40)  # an orange wall
    room[16:] = (60, 140, 90)  # a green floor
    room[12:28, 12:20] = (12, 12, 12)  # the black can
    always = RoomColours(probability=1.0)
    outs = [always(room, rng) for _ in range(12)]
    assert all(o.dtype == np.uint8 and o.shape == room.shape for o in outs)
    assert len({tuple(o[4, 4]) for o in outs}) > 6  # the wall takes many colours
    for o in outs:  # the can stays a dark grey
        can = o[12:28, 12:20].astype(int)
        assert can.max() <= 16 and np.ptp(can, axis=2).max() <= 2
    np.testing.assert_array_equal(RoomColours(probability=0.0)(room, rng), room)
    again = RoomColours(probability=1.0)
    np.testing.assert_array_equal(
        again(room, np.random.default_rng(3)), again(room, np.random.default_rng(3))
    )
    assert (
        training_augmentations(True, {"sensor": 0.5, "room": 0.3})
        .describe()
        .startswith("RoomColours(probability=0.3) + Sensor")
    )
    with pytest.raises(ValueError, match="room colour"):
        RoomColours(probability=1.5)
    with pytest.raises(VisionError, match="room-augment"):
        train_network(*coloured_frames(4, 0), TrainConfig(shares={"room": -0.1}, progress=False))


def test_tone_lift_lifts_dark_tones_only_and_joins_the_registry() -> None:
    """The black can turns brown-grey, white stays white, order is kept; one class and one registry line
    give `car train --tone-augment P`."""
    from car.commands import train as train_command
    from vision.augment import SHARE_AUGMENTATIONS, ToneLift

    ramp = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (4, 1, 3))
    lifted = ToneLift(probability=1.0)(ramp, np.random.default_rng(0))
    assert lifted.dtype == np.uint8 and lifted.shape == ramp.shape
    assert lifted[0, 0, 0] == 0 and lifted[0, 255, 0] == 255
    assert lifted[0, 20, 0] >= 2 * 20  # a black can's grey at least doubled
    assert np.all(np.diff(lifted[0, :, 0].astype(int)) >= 0)  # the tone curve keeps the order of greys
    again = ToneLift(probability=1.0)(ramp, np.random.default_rng(0))
    np.testing.assert_array_equal(lifted, again)
    np.testing.assert_array_equal(ToneLift(probability=0.0)(ramp, np.random.default_rng(0)), ramp)
    with pytest.raises(ValueError, match="gamma"):
        ToneLift(gamma=(0.8, 1.5))
    assert list(SHARE_AUGMENTATIONS) == ["room", "tone", "sensor"]
    chain = training_augmentations(False, {"sensor": 0.5, "tone": 0.3, "room": 0.2}).describe()
    assert chain.index("RoomColours") < chain.index("ToneLift") < chain.index("SensorAugment")
    with pytest.raises(ValueError, match="unknown"):
        training_augmentations(False, {"sunlight": 0.5})
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    args = parser.parse_args(["runs/x", "--out", "runs/y", "--tone-augment", "0.3"])
    assert args.tone_augment == 0.3 and args.room_augment == 0.0
    with pytest.raises(VisionError, match="tone-augment"):
        train_network(*coloured_frames(4, 0), TrainConfig(shares={"tone": 2.0}, progress=False))
    with pytest.raises(VisionError, match="unknown"):
        train_network(*coloured_frames(4, 0), TrainConfig(shares={"sunlight": 0.5}, progress=False))
