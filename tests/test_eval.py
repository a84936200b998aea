"""`car eval`: the network's numbers in `car baseline --json`'s keys, on every runtime, with clear errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from car.commands import evaluate
from tests.test_training import coloured_frames, write_folder
from vision.errors import VisionError
from vision.export import LabelledFrames, build_bundle
from vision.metrics import classification_report
from vision.networks import build_network
from vision.training import TrainConfig, train_network


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    images, labels = coloured_frames(24, 11)
    config = TrainConfig(
        arch="edge", epochs=3, batch_size=8, learning_rate=3e-3, seed=0, threads=1, progress=False
    )
    result = train_network(images, labels, config)
    calib = LabelledFrames(images[result.split.val], labels[result.split.val])
    return build_bundle(result.network, "edge", tmp_path_factory.mktemp("ev") / "m", calib, int8=True).root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("evdata") / "frames", 16, seed=21)


def _run(capsys: pytest.CaptureFixture[str], bundle: Path, data: Path, runtime: str) -> dict[str, object]:
    args = argparse.Namespace(
        bundle=bundle, data=data, runtime=runtime, threads=1, no_baseline=False, json=True
    )
    assert evaluate.run(args) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_json_has_the_report_keys_for_every_runtime(
    trained: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = {rt: _run(capsys, trained, data, rt) for rt in evaluate.RUNTIME_CHOICES}
    for runtime, doc in results.items():
        assert {"accuracy", "precision", "recall", "confusion", "n"} <= set(doc), runtime
        assert doc["n"] == 16 and doc["runtime"] == runtime
        baseline = doc["baseline"]
        assert isinstance(baseline, dict)
        assert set(baseline) == {"accuracy", "precision", "recall", "confusion", "n"} and baseline["n"] == 16
        confusion = np.asarray(doc["confusion"])
        assert confusion.shape == (2, 2) and confusion.sum() == 16
        assert confusion[0].sum() == 8  # the folder holds 8 GO and 8 STOP frames
    assert results["torch"]["confusion"] == results["onnx"]["confusion"]


def test_numbers_match_a_direct_computation(trained: Path, data: Path) -> None:
    from vision.bundle import load_bundle
    from vision.datasets import load_dataset

    dataset = load_dataset(data)
    bundle = load_bundle(trained)
    predictions = evaluate.predict_labels(bundle, dataset.images, "onnx")
    expected = classification_report(dataset.labels, predictions)
    got = evaluate.evaluate(trained, data, runtime="onnx", with_baseline=False)
    assert got.network == expected
    assert got.network.accuracy >= 0.9  # red vs blue is learnable in 3 epochs; chance would be 0.5


def test_text_output_shows_the_confusion_matrix(
    trained: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        bundle=trained, data=data, runtime="onnx", threads=1, no_baseline=True, json=False
    )
    assert evaluate.run(args) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion" in out and "STOP" in out


def test_bad_inputs_are_clear_errors(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(VisionError, match="no such folder"):
        evaluate.evaluate(trained, tmp_path / "missing", with_baseline=False)
    with pytest.raises(VisionError, match=r"not a model bundle|no such model bundle"):
        evaluate.evaluate(tmp_path, tmp_path, with_baseline=False)


def test_untrained_bundle_scores_worse_than_trained(trained: Path, data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    untrained = build_bundle(build_network("edge"), "edge", tmp_path / "u").root
    bad = evaluate.evaluate(untrained, data, runtime="onnx", with_baseline=False)
    good = evaluate.evaluate(trained, data, runtime="onnx", with_baseline=False)
    assert good.network.accuracy > bad.network.accuracy
