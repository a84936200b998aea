"""The out-of-distribution signal: computed without torch, calibrated in the bundle, slows and STOPs."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from car.config import CarConfig
from car.sim_eval import EvalSettings, evaluate
from vision.bundle import DEFAULT_BUNDLE, file_entry, load_bundle, with_files, write_manifest
from vision.ood import OOD_FILE, OOD_ROLE, OodCalibration, OodDetector, load_calibration, ood_reading
from vision.preprocess import fit_to_input, to_network_input
from vision.sim import WorldConfig
from vision.sim.dataset import generate_frame

pytestmark = pytest.mark.skipif(
    not (DEFAULT_BUNDLE / OOD_FILE).exists(), reason="the shipped bundle has no ood calibration"
)


def scores(detector: OodDetector, frames: list[np.ndarray]) -> np.ndarray:
    prep = load_bundle(DEFAULT_BUNDLE).manifest.preprocessing
    out = []
    for rgb in frames:
        detector.predict(to_network_input(fit_to_input(rgb, prep.input_size), prep))
        reading = ood_reading(detector)
        assert reading is not None
        out.append(reading.score)
    return np.array(out)


def test_calibration_round_trip_and_unfamiliarity() -> None:
    calibration = load_calibration(load_bundle(DEFAULT_BUNDLE))
    assert calibration is not None and 0 < calibration.slow_from < calibration.stop_above
    again = OodCalibration.from_json(calibration.to_json(), "test")
    assert np.array_equal(again.precision, calibration.precision) and again.tensors == calibration.tensors
    assert calibration.unfamiliarity(0.0) == 0.0 and calibration.unfamiliarity(calibration.stop_above) == 1.0


def test_normal_frames_are_familiar_and_unlike_ones_score_higher() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE)
    calibration = load_calibration(bundle)
    assert calibration is not None
    detector = OodDetector(bundle, calibration)
    normal = [generate_frame(WorldConfig(), 44, i).rgb for i in range(16)]
    night = [(f.astype(np.float32) * 0.3).astype(np.uint8) for f in normal]
    shifted = [generate_frame(WorldConfig(domain="shifted"), 45, i).rgb for i in range(16)]
    normal_scores = scores(detector, normal)
    assert (normal_scores < calibration.stop_above).all()  # never fires on the training world
    assert np.median(scores(detector, night)) > np.median(normal_scores)
    assert np.median(scores(detector, shifted)) > np.median(normal_scores)


def test_past_the_limit_the_car_stops_with_out_of_distribution(tmp_path: Path) -> None:
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle_dir)
    bundle = load_bundle(bundle_dir)
    calibration = load_calibration(bundle)
    assert calibration is not None
    strict = dataclasses.replace(calibration, slow_from=1e-6, stop_above=2e-6)  # every frame is unfamiliar
    (bundle_dir / OOD_FILE).write_text(strict.to_json())
    write_manifest(bundle_dir, with_files(bundle.manifest, **{OOD_ROLE: file_entry(bundle_dir, OOD_FILE)}))
    from car.config import with_overrides

    config = with_overrides(CarConfig(), [f"model.bundle={bundle_dir}"])
    report = evaluate(EvalSettings(runs=1, seed=4, kinds=("empty",)), config)
    (outcome,) = report.outcomes
    assert outcome.outcome == "false_stop" and outcome.ood_stop and report.ood_stops == 1
    off = evaluate(
        EvalSettings(runs=1, seed=4, kinds=("empty",)), with_overrides(config, ["policy.ood=false"])
    )
    assert off.ood_stops == 0 and off.outcomes[0].ood_faults == 0
