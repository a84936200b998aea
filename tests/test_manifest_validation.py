"""A manifest is validated once, when it is loaded, for every command (issue 12): each bad manifest is built
by editing a real bundle's manifest.json, and `car eval`, `car drive` and `car replay` all refuse it in one
line (exit 2) instead of crashing later (`input_size: -3` used to crash `car eval` in numpy)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from car.cli import main
from tests.test_training import write_folder
from vision.bundle import BundleError, load_bundle
from vision.detector import DetectorError, OnnxDetector
from vision.export import build_bundle
from vision.networks import build_network

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return build_bundle(build_network("edge"), "edge", tmp_path_factory.mktemp("m") / "good").root


def edited(good: Path, where: Path, edit: Edit) -> Path:
    bundle = Path(shutil.copytree(good, where))
    doc = json.loads((bundle / "manifest.json").read_text())
    edit(doc)
    (bundle / "manifest.json").write_text(json.dumps(doc))
    return bundle


def _set(path: str, value: object) -> Edit:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc[key]
        doc[last] = value

    return edit


BAD: dict[str, tuple[Edit, str]] = {
    "negative input size": (_set("preprocessing.input_size", -3), "input_size=-3 must be a positive"),
    "fractional input size": (_set("preprocessing.input_size", 22.5), "must be a positive whole number"),
    "input size the arch cannot take": (
        _set("preprocessing.input_size", 112),
        "takes 224×224 input, not 112",
    ),
    "two means": (_set("preprocessing.mean", [0.5, 0.5]), "need 3 values each"),
    "four stds": (_set("preprocessing.std", [0.2, 0.2, 0.2, 0.2]), "need 3 values each"),
    "unknown arch": (_set("arch", "resnet"), "unknown architecture 'resnet'"),
    "stop label not a label": (
        _set("stop_label", "blocked"),
        "stop_label 'blocked' is not one of the labels",
    ),
    "labels the arch does not have": (_set("labels", ["free", "blocked"]), "has labels ['GO', 'STOP']"),
    "one label": (_set("labels", ["STOP"]), "at least 2 distinct"),
    "unknown output kind": (_set("output", "tanh"), "output 'tanh' must be one of"),
    "softmax on a sigmoid network": (_set("output", "softmax"), "has output sigmoid, not 'softmax'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_manifest_is_refused_at_load(case: str, good: Path, tmp_path: Path) -> None:
    edit, match = BAD[case]
    with pytest.raises(BundleError, match=re.escape(match)):
        load_bundle(edited(good, tmp_path / "bad", edit))


@pytest.mark.parametrize("case", ["negative input size", "unknown arch"])
def test_eval_drive_and_replay_refuse_it_in_one_line(
    case: str, good: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = edited(good, tmp_path / "bad", BAD[case][0])
    log = tmp_path / "d.sqlite"
    assert (
        main(["drive", "--set", f"model.bundle={good}", "--duration", "0.3", "--log", str(log), "--json"])
        == 0
    )
    capsys.readouterr()
    data = write_folder(tmp_path / "frames", 4, seed=1)
    commands = {
        "eval": ["eval", str(bad), str(data)],
        "drive": ["drive", "--set", f"model.bundle={bad}", "--duration", "0.3", "--log", str(tmp_path / "x")],
        "replay": ["replay", str(log), "--model", str(bad)],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and BAD[case][1] in err, (name, err)


def test_labels_that_do_not_match_the_network_outputs_are_refused_when_it_is_opened(
    tmp_path: Path,
) -> None:
    """A manifest naming 3 labels for a 2-output ONNX network: refused when onnxruntime opens the file."""
    torch.manual_seed(0)
    net = build_network("mobilenet_v3_small", 2, "softmax")
    from vision.export import OutputHead
    from vision.preprocess import Preprocessing

    made = build_bundle(
        net,
        "mobilenet_v3_small",
        tmp_path / "m",
        prep=Preprocessing(32),
        head=OutputHead(("a", "b"), "a", "softmax"),
    )
    assert OnnxDetector(made).predict(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 2)
    bad = load_bundle(edited(made.root, tmp_path / "bad", _set("labels", ["a", "b", "c"])))
    with pytest.raises(DetectorError, match="does not match the manifest's 3 labels"):
        OnnxDetector(bad)
