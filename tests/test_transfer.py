"""Transfer learning: `car train --init FILE|BUNDLE [--freeze backbone|stem]` on tiny data, small inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torchvision

from car.commands import train
from tests.test_training import coloured_frames, write_folder
from vision.bundle import load_bundle
from vision.errors import VisionError
from vision.export import build_bundle
from vision.networks import build_network
from vision.preprocess import Preprocessing
from vision.torch_model import load_state_dict
from vision.training import TrainConfig, train_network
from vision.transfer import InitError

SMALL = Preprocessing(input_size=32)


def imagenet_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """What a user has from ImageNet training: torchvision keys and a 1000-way head."""
    torch.manual_seed(5)
    state = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    torch.save(state, path)
    return state


def config(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(arch="mobilenet_v3_small", epochs=2, batch_size=8, seed=0, threads=1)
    base.update(progress=False, **kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_init_from_an_imagenet_state_dict_keeps_the_backbone_frozen_and_trains_a_new_head(
    tmp_path: Path,
) -> None:
    state = imagenet_checkpoint(tmp_path / "inet.pth")
    images, labels = coloured_frames(16, 0, size=32)
    result = train_network(images, labels, config(init=str(tmp_path / "inet.pth"), freeze="backbone"), SMALL)
    trained = result.network.state_dict()
    head = {"net.classifier.3.weight", "net.classifier.3.bias"}
    assert trained["net.classifier.3.weight"].shape == (2, 1024)  # 1000 ImageNet classes -> GO, STOP
    for key, tensor in state.items():
        if f"net.{key}" not in head:  # every backbone tensor (BatchNorm statistics too) is the checkpoint's
            assert torch.equal(trained[f"net.{key}"], tensor), key
    untrained = build_network("mobilenet_v3_small")
    assert not torch.equal(
        trained["net.classifier.3.weight"], untrained.state_dict()["net.classifier.3.weight"]
    )


def test_init_without_freeze_starts_from_the_weights_and_trains_them(tmp_path: Path) -> None:
    state = imagenet_checkpoint(tmp_path / "inet.pth")
    images, labels = coloured_frames(16, 0, size=32)
    first = config(init=str(tmp_path / "inet.pth"), epochs=1)
    network = train_network(images, labels, first, SMALL).network
    moved = network.state_dict()["net.features.0.0.weight"]
    assert not torch.equal(moved, state["features.0.0.weight"])
    assert torch.allclose(moved, state["features.0.0.weight"], atol=0.05)  # one small epoch from there


def test_car_train_init_bundle_takes_its_arch_and_preprocessing_and_freeze_stem_keeps_the_stem(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    start = build_bundle(build_network("edge"), "edge", tmp_path / "start")
    data = write_folder(tmp_path / "frames", 20, seed=2)
    args = argparse.Namespace(
        data=[data], arch=None, out=tmp_path / "tuned", epochs=1, seed=0, batch_size=8, lr=1e-3, limit=None,
        threads=1, no_int8=True, no_augment=False, json=True, init=str(start.root), freeze="stem", size=None,
    )  # fmt: skip
    assert train.run(args) == 0
    tuned = load_bundle(tmp_path / "tuned")
    assert tuned.manifest.arch == "edge" and tuned.manifest.preprocessing == start.manifest.preprocessing
    before, after = load_state_dict(start), load_state_dict(tuned)
    assert torch.equal(before["features.0.weight"], after["features.0.weight"])  # the frozen stem
    assert not torch.equal(before["features.3.weight"], after["features.3.weight"])  # trained on


def test_bad_warm_starts_are_clear_errors(tmp_path: Path) -> None:
    imagenet_checkpoint(tmp_path / "inet.pth")
    images, labels = coloured_frames(8, 0, size=32)
    with pytest.raises(InitError, match="does not fit this architecture"):
        train_network(images, labels, config(arch="resnet18", init=str(tmp_path / "inet.pth")), SMALL)
    with pytest.raises(VisionError, match="needs --init"):
        train_network(images, labels, config(freeze="stem"), SMALL)
    with pytest.raises(VisionError, match="takes 224×224 input"):
        train_network(images, labels, config(arch="edge"), SMALL)
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 10)
    with pytest.raises(InitError, match="not a torch state_dict"):
        train_network(images, labels, config(init=str(tmp_path / "junk.pth")), SMALL)
