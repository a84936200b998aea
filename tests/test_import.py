"""`car import`: JetBot-shaped torchvision state_dicts become bundles that drive, evaluate, replay and load
their torch twin; bad inputs are one-line errors. Small input sides (64) keep the exports quick."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from car.cli import main
from tests.test_drive_imports import PROBE
from tests.test_training import write_folder
from vision.bundle import load_bundle
from vision.detector import OnnxDetector, build_detector
from vision.preprocess import to_network_input
from vision.torch_model import load_go_stop_network

SIZE = "64"


def jetbot_resnet18(path: Path, seed: int = 0) -> nn.Module:
    """What JetBot's train_model notebook saves: resnet18 with `fc` replaced by Linear(512, 2)."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Linear(512, 2)
    model.eval()
    torch.save(model.state_dict(), path)
    return model


def import_args(weights: Path, out: Path, arch: str = "resnet18", *extra: str) -> list[str]:
    return [
        "import", "--arch", arch, "--weights", str(weights), "--labels", "blocked,free",
        "--stop-label", "blocked", "--output", "softmax", "--out", str(out), "--size", SIZE, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def jetbot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    root = tmp_path_factory.mktemp("jetbot")
    model = jetbot_resnet18(root / "best_model.pth")
    assert main(import_args(root / "best_model.pth", root / "jetbot")) == 0
    return root / "jetbot", model


def test_jetbot_resnet18_bundle_gives_p_stop_of_blocked_through_softmax(
    jetbot: tuple[Path, nn.Module],
) -> None:
    path, model = jetbot
    bundle = load_bundle(path)
    m = bundle.manifest
    assert (m.arch, m.labels, m.stop_label, m.output) == (
        "resnet18",
        ("blocked", "free"),
        "blocked",
        "softmax",
    )
    assert m.preprocessing.input_size == 64 and m.metrics.onnx_parity_max_abs is not None
    assert m.metrics.onnx_parity_max_abs <= 1e-5 and not bundle.has("onnx_int8")
    rng = np.random.default_rng(0)
    x = to_network_input(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8), m.preprocessing)
    with torch.inference_mode():
        blocked_free = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()  # JetBot's live demo
    onnx = OnnxDetector(bundle)
    np.testing.assert_allclose(onnx.label_probs(x), blocked_free, atol=1e-5)
    go_stop = onnx.predict(x)  # (GO, STOP) = (free, blocked)
    np.testing.assert_allclose(go_stop, blocked_free[:, ::-1], atol=1e-5)
    twin = build_detector(bundle, "torch")  # the torch twin the audit loads
    np.testing.assert_allclose(twin.predict(x), go_stop, atol=1e-5)
    with torch.inference_mode():
        audited = load_go_stop_network(bundle)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(audited, go_stop, atol=1e-5)


def test_imported_bundle_drives_replays_and_evaluates(
    jetbot: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = jetbot
    log = tmp_path / "drive.sqlite"
    assert (
        main(["drive", "--set", f"model.bundle={path}", "--duration", "1", "--log", str(log), "--json"]) == 0
    )
    drive = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert drive["frames"] > 0
    assert main(["replay", str(log), "--json"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["bundle_matches_log"] and replay["disagree"] == 0 and replay["frames"] == drive["frames"]
    data = write_folder(tmp_path / "frames", 8, seed=3)
    for runtime in ("onnx", "torch"):
        assert main(["eval", str(path), str(data), "--runtime", runtime, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["n"] == 8


def test_drive_with_an_imported_resnet18_imports_no_torch(
    jetbot: tuple[Path, nn.Module], tmp_path: Path
) -> None:
    code = PROBE.format(bundle=jetbot[0], log=tmp_path / "d.sqlite")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    lines = out.stdout.strip().splitlines()
    probe = json.loads(lines[-1])
    assert probe["code"] == 0 and json.loads(lines[-2])["frames"] > 0
    assert probe["heavy"] == []


def test_jetbot_alexnet_imports_at_224(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = torchvision.models.alexnet(weights=None).eval()
    model.classifier[6] = nn.Linear(4096, 2)  # JetBot's alexnet head
    torch.save(model.state_dict(), tmp_path / "best_model.pth")
    args = import_args(tmp_path / "best_model.pth", tmp_path / "alex", "alexnet")
    assert main([*args[:-1], "224"]) == 0  # its adaptive 6×6 pooling exports from a 224 input
    bundle = load_bundle(tmp_path / "alex")
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.inference_mode():
        blocked_free = torch.softmax(model(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(OnnxDetector(bundle).predict(x), blocked_free[:, ::-1], atol=1e-5)


def test_int8_is_calibrated_on_the_calib_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jetbot_resnet18(tmp_path / "best_model.pth", seed=4)
    calib = write_folder(tmp_path / "calib", 16, seed=4)
    args = import_args(
        tmp_path / "best_model.pth", tmp_path / "r8", "resnet18", "--calib", str(calib), "--json"
    )
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["int8"] and doc["labels"] == ["blocked", "free"] and doc["stop_label"] == "blocked"
    assert doc["parity_frames"] == 16 and doc["onnx_parity_max_abs"] <= 1e-5 and "16 frames" in doc["note"]
    bundle = load_bundle(tmp_path / "r8")
    assert bundle.has("onnx_int8") and bundle.manifest.metrics.int8_frames == 16
    x = np.zeros((1, 3, 64, 64), np.float32)
    assert build_detector(bundle, "int8").predict(x).shape == (1, 2)


def test_imagenet_labels_come_from_torchvision_and_p_go_is_the_rest(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = torchvision.models.mobilenet_v3_small(weights=None)  # ImageNet-shaped: 1000 outputs
    torch.save(model.state_dict(), tmp_path / "mnv3.pth")
    args = [
        "import", "--arch", "mobilenet_v3_small", "--weights", str(tmp_path / "mnv3.pth"), "--labels",
        "imagenet", "--stop-label", "traffic light", "--output", "softmax", "--out", str(tmp_path / "inet"),
        "--size", SIZE,
    ]  # fmt: skip
    assert main(args) == 0
    bundle = load_bundle(tmp_path / "inet")
    m = bundle.manifest
    assert (
        len(m.labels) == 1000 and m.labels[0] == "tench" and m.stop_index == m.labels.index("traffic light")
    )
    detector = OnnxDetector(bundle)
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    probs = detector.label_probs(x)
    np.testing.assert_allclose(detector.predict(x)[:, 1], probs[:, m.stop_index])
    np.testing.assert_allclose(detector.predict(x)[:, 0], 1 - probs[:, m.stop_index], atol=1e-6)


def _whole_model(path: Path) -> None:
    torch.save(torchvision.models.resnet18(weights=None), path)  # a pickled module, not a state_dict


def _tensor_list(path: Path) -> None:
    torch.save([torch.zeros(2)], path)


def _text(path: Path) -> None:
    path.write_text("not weights\n")


@pytest.mark.parametrize(
    ("make", "match"),
    [(_whole_model, "weights_only"), (_tensor_list, "expected a state_dict"), (_text, "weights_only")],
)
def test_a_file_that_is_not_a_state_dict_is_a_one_line_error(
    make: object, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.pth"
    make(weights)
    assert main(import_args(weights, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and str(weights) in err
    assert not (tmp_path / "out").exists()


def test_wrong_arch_labels_or_stop_label_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "best_model.pth"
    jetbot_resnet18(weights)
    args = import_args(weights, tmp_path / "o")

    def changed(option: str, value: str) -> list[str]:
        at = args.index(option) + 1
        return [*args[:at], value, *args[at + 1 :]]

    cases = {
        "does not fit this architecture": changed("--arch", "resnet34"),
        "fc.weight has shape (2, 512), this network needs (3, 512)": changed(
            "--labels", "blocked,free,maybe"
        ),
        "--stop-label 'STOP' is not one of --labels": changed("--stop-label", "STOP"),
        "needs an input side of at least 224": changed("--arch", "alexnet"),
        "labels": changed("--labels", "blocked"),
    }
    for match, args in cases.items():
        assert main(args) == 2, match
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "o").exists()
