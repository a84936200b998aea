"""`car explain-image`: top-k classes, maps and half-masking, for a GO/STOP bundle and a many-class one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from car.cli import main
from explain.occlusion import VARIANTS
from tests.test_explain_audit import assert_images_load_in_chromium
from tests.test_explain_support import can_detector, drive_frames, make_bundle, tiny_arch_registered
from vision.bundle import BundleManifest, ModelBundle, file_entry, write_manifest
from vision.export import ONNX_FILE, WEIGHTS_FILE, export_onnx, save_weights
from vision.imageio import write_rgb
from vision.networks import ARCHITECTURES, register
from vision.preprocess import Preprocessing

MANY = "tiny-many-class-test"
CLASSES = 40


class TinyManyClassNet(nn.Module):
    """A randomly initialised chain classifier with CLASSES outputs (stands in for an ImageNet network)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.MaxPool2d(2), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 16 * 16, CLASSES), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@pytest.fixture(scope="module", autouse=True)
def archs() -> Iterator[None]:
    with tiny_arch_registered():
        register(MANY)(TinyManyClassNet)
        try:
            yield
        finally:
            ARCHITECTURES.pop(MANY, None)


def many_class_bundle(root: Path) -> ModelBundle:
    """Weights + ONNX + manifest, written directly (today's bundle builder checks two outputs)."""
    torch.manual_seed(5)
    net = TinyManyClassNet().eval()
    root.mkdir(parents=True)
    save_weights(net, root / WEIGHTS_FILE)
    export_onnx(net, root / ONNX_FILE, 32)
    manifest = BundleManifest(
        name="many",
        arch=MANY,
        preprocessing=Preprocessing(input_size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        files={"onnx": file_entry(root, ONNX_FILE), "weights": file_entry(root, WEIGHTS_FILE)},
    )
    return write_manifest(root, manifest)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("images")
    frames = drive_frames(16)
    paths = []
    for i in (2, 15):  # the can far away, then close (a STOP for the can detector)
        path = root / f"frame_{i}.png"
        write_rgb(path, frames[i][0])
        paths.append(path)
    return paths


def test_a_many_class_bundle_gets_top_k_maps_and_masking_results(
    images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = many_class_bundle(tmp_path / "many")
    out = tmp_path / "report"
    args = ["explain-image", *map(str, images), "--model", str(bundle.root), "--out", str(out), "--top", "5"]
    assert main([*args, "--background", "sim:0@4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["images"]) == 2 and len(doc["occlusion"]) == 2 * len(VARIANTS)
    for image in doc["images"]:
        probs = [c["probability"] for c in image["top"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
        assert all(c["label"].startswith("class ") for c in image["top"])  # the manifest names no classes
        assert (out / image["maps"]["png"]).is_file()
    for row in doc["occlusion"]:
        assert {row["half"], row["fill"]} <= {"top", "bottom", "white", "black", "noise"}
        assert isinstance(row["top1_changed"], bool) and len(row["top"]) == 5
    assert_images_load_in_chromium(out / "report.html", tmp_path)


def test_the_can_detector_loses_its_stop_when_the_bottom_half_is_masked(
    images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path, can_detector())
    out = tmp_path / "gostop"
    args = ["explain-image", str(images[1]), "--model", str(bundle.root), "--out", str(out), "--top", "5"]
    assert main([*args, "--background", "sim:0@4", "--method", "integrated-gradients", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (image,) = doc["images"]
    assert [c["label"] for c in image["top"]] == ["STOP", "GO"]  # two outputs: --top is capped
    rows = {(r["half"], r["fill"]): r for r in doc["occlusion"]}
    # The close can stands in the bottom half: white or noise there takes the STOP away; the top half
    # does not matter to this network.
    assert rows[("bottom", "white")]["top1_changed"] and rows[("bottom", "white")]["top"][0]["label"] == "GO"
    assert not any(rows[("top", fill)]["top1_changed"] for fill in ("white", "black", "noise"))
    # Its STOP map lies mostly in the bottom half (the close can), and stays there when the top is masked.
    assert image["maps"]["classes"][0] == "STOP" and image["maps"]["top_half_share"][0] < 0.5
    assert rows[("top", "noise")]["maps"]["top_half_share"][0] < 0.5
    assert "report.html" in doc["report"]


def test_bad_inputs_are_one_line_errors(
    images: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = make_bundle(tmp_path, can_detector())
    base = ["explain-image", "--model", str(bundle.root), "--out", str(tmp_path / "x")]
    assert main([*base, str(tmp_path / "nope.png")]) == 2
    assert "nope.png" in capsys.readouterr().err
    assert main([*base, str(images[0]), "--top", "0"]) == 2
    assert "--top 0" in capsys.readouterr().err
