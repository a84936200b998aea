"""Model bundles: manifest round trip, verified loading, clear errors for damaged bundles."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from vision.bundle import DEFAULT_BUNDLE, REPO_ROOT, BundleError, BundleManifest, load_bundle
from vision.export import build_bundle
from vision.networks import build_network


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return build_bundle(build_network("edge"), "edge", tmp_path_factory.mktemp("b") / "tiny").root


@pytest.fixture
def bundle_copy(made: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made, tmp_path / "copy"))


def test_bundle_has_every_file_and_a_complete_manifest(made: Path) -> None:
    bundle = load_bundle(made)
    m = bundle.manifest
    assert (m.name, m.arch, m.labels, m.threshold) == ("tiny", "edge", ("GO", "STOP"), 0.5)
    assert m.preprocessing.channel_order == "RGB" and m.preprocessing.input_size == 224
    assert set(m.files) == {"onnx", "weights"}
    for role, entry in m.files.items():
        assert bundle.path_of(role).stat().st_size == entry.bytes and len(entry.sha256) == 64
    assert m.metrics.onnx_parity_max_abs is not None and m.metrics.onnx_parity_max_abs <= 1e-5
    assert {"torch", "onnx", "onnxruntime", "numpy"} <= set(m.versions)
    assert m.created.endswith("+00:00")
    assert len(bundle.sha256) == 64
    assert load_bundle(made / "manifest.json").sha256 == bundle.sha256


def test_manifest_json_round_trips(made: Path) -> None:
    manifest = load_bundle(made).manifest
    again = BundleManifest.from_json(manifest.to_json(), "test")
    assert again == manifest


def test_missing_file_is_named(bundle_copy: Path) -> None:
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx: missing onnx file"):
        load_bundle(bundle_copy)


def test_truncated_file_is_named(bundle_copy: Path) -> None:
    path = bundle_copy / "weights.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BundleError, match=r"weights\.pt: truncated \(1000 bytes"):
        load_bundle(bundle_copy)


def test_swapped_content_fails_the_hash(bundle_copy: Path) -> None:
    path = bundle_copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 does not match"):
        load_bundle(bundle_copy)
    assert load_bundle(bundle_copy, verify=False).manifest.arch == "edge"


def test_missing_or_damaged_manifest(bundle_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such model bundle folder"):
        load_bundle(tmp_path / "nowhere")
    manifest = bundle_copy / "manifest.json"
    manifest.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)
    manifest.unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(threshold=1.5), "threshold=1.5"),
        (lambda d: d.update(labels=["STOP", "GO"]), "labels"),
        (lambda d: d["preprocessing"].update(channel_order="BGR"), "channel_order"),
        (lambda d: d["files"].pop("weights"), "weights"),
        (lambda d: d["files"]["onnx"].update(path="../../etc/passwd"), "must stay in the bundle"),
        (lambda d: d.pop("arch"), "missing key"),
    ],
)
def test_bad_manifest_values_are_clear_errors(
    bundle_copy: Path, edit: Callable[[dict[str, Any]], object], message: str
) -> None:
    path = bundle_copy / "manifest.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_weights_of_another_arch_are_rejected(bundle_copy: Path) -> None:
    from vision.torch_model import load_torch_network

    path = bundle_copy / "manifest.json"
    doc = json.loads(path.read_text())
    doc["arch"] = "seed"
    path.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"weights do not fit arch 'seed'|has shape"):
        load_torch_network(load_bundle(bundle_copy))


def test_torch_twin_loads_safely_and_matches(made: Path) -> None:
    from vision.torch_model import load_torch_network

    network = load_torch_network(load_bundle(made))
    assert not network.training
    state = torch.load(made / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_default_bundle_lives_in_the_repository() -> None:
    assert DEFAULT_BUNDLE.parent == REPO_ROOT / "models"
    assert (REPO_ROOT / "pyproject.toml").is_file()


def test_car_side_modules_do_not_import_torch() -> None:
    code = (
        "import sys, vision.bundle, vision.detector, vision.quantize;"
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_car_threshold_shows_and_sets_the_manifest_threshold_with_its_reason(bundle_copy: Path) -> None:
    from car.cli import main

    assert load_bundle(bundle_copy).manifest.threshold == 0.5
    before = load_bundle(bundle_copy).sha256
    assert main(["threshold", str(bundle_copy), "0.7", "--why", "tuning seeds 1, 2"]) == 0
    after = load_bundle(bundle_copy)
    assert (after.manifest.threshold, after.manifest.threshold_note) == (0.7, "tuning seeds 1, 2")
    assert after.sha256 != before  # a changed manifest is a changed bundle (logs then need --model)
    assert BundleManifest.from_json(after.manifest.to_json(), "x") == after.manifest
    assert main(["threshold", str(bundle_copy)]) == 0  # showing changes nothing
    assert load_bundle(bundle_copy).sha256 == after.sha256
    assert main(["threshold", str(bundle_copy), "1.5", "--why", "x"]) == 2
    assert main(["threshold", str(bundle_copy), "0.6"]) == 2  # no reason given
    assert main(["threshold", str(bundle_copy), "--why", "x"]) == 2  # a reason without a value
    assert load_bundle(bundle_copy).manifest.threshold == 0.7
