"""Named worlds: `default` renders exactly as before; `flat_light` and `shifted` change the look and never
the labels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from car.cli import main
from vision.errors import VisionError
from vision.sim import Placement, World, WorldConfig, sample_scene
from vision.sim.domains import DOMAINS, SHIFTED_FLOORS
from vision.sim.scene import Scene


def _scene_and_frame(domain: str, seed: int) -> tuple[Scene, np.ndarray, int]:
    config = WorldConfig(domain=domain)
    scene = sample_scene(np.random.default_rng([seed, 7]), "can_path", config, Placement(ahead=(0.2, 0.3)))
    rgb, truth = World(config, scene, seed).render()
    return scene, rgb, truth.label


def test_registry_names_default_and_shifted() -> None:
    assert {"default", "shifted"} <= set(DOMAINS)
    with pytest.raises(VisionError, match="choose from"):
        WorldConfig(domain="mars")


def test_shifted_keeps_geometry_and_label_but_changes_the_look() -> None:
    for seed in range(3):
        plain, rgb_plain, label_plain = _scene_and_frame("default", seed)
        shifted, rgb_shifted, label_shifted = _scene_and_frame("shifted", seed)
        assert plain.can == shifted.can and plain.boxes == shifted.boxes
        assert label_plain == label_shifted == 1
        assert shifted.floor.tint in SHIFTED_FLOORS
        assert np.abs(rgb_plain.astype(int) - rgb_shifted.astype(int)).mean() > 10


def test_flat_light_relights_the_training_room_and_stops_short_of_the_shifted_light() -> None:
    for seed in range(6):
        plain, rgb_plain, label_plain = _scene_and_frame("default", seed)
        flat, rgb_flat, label_flat = _scene_and_frame("flat_light", seed)
        assert label_plain == label_flat == 1
        # only the light changes: same room, can, furniture and white balance as the training world draws
        assert replace(flat, lighting=plain.lighting) == plain
        light = flat.lighting
        assert 0.7 <= light.ambient < 0.8  # the shifted world's flat light starts at 0.8
        assert 0.2 < light.exposure < 8.0
        assert light.white_balance == plain.lighting.white_balance
        assert np.abs(rgb_plain.astype(int) - rgb_flat.astype(int)).mean() > 1


def test_default_domain_is_the_world_as_before() -> None:
    config = WorldConfig()
    a = sample_scene(np.random.default_rng(5), "empty", config)
    b = sample_scene(np.random.default_rng(5), "empty", WorldConfig(domain="default"))
    assert a == b


def test_car_sim_dataset_domain_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["sim", "dataset", "--out", str(tmp_path / "d"), "--n", "3", "--domain", "shifted", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n"] == 3
