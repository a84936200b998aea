"""The out-of-distribution signal: computed without torch, calibrated in the bundle, slows and STOPs."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from car.config import CarConfig
from car.sim_eval import EvalSettings, evaluate
from vision.bundle import DEFAULT_BUNDLE, BundleError, file_entry, load_bundle, with_files, write_manifest
from vision.ood import (
    OOD_FILE,
    OOD_ROLE,
    OodCalibration,
    OodDetector,
    OodReading,
    OodSuite,
    load_calibration,
    read_signals,
)
from vision.ood_image import STATISTICS, ImageStatsSignal, image_statistics
from vision.ood_signal import OodInput, ramp
from vision.preprocess import fit_to_input, to_network_input
from vision.sim import WorldConfig
from vision.sim.dataset import generate_frame

pytestmark = pytest.mark.skipif(
    not (DEFAULT_BUNDLE / OOD_FILE).exists(), reason="the shipped bundle has no ood calibration"
)


def scores(detector: OodDetector, frames: list[np.ndarray], kind: str = "features") -> np.ndarray:
    """Each frame's score by the calibration's `kind` signal, computed as the car does."""
    prep = load_bundle(DEFAULT_BUNDLE).manifest.preprocessing
    signal = detector.suite.signal(kind)
    assert signal is not None
    out = []
    for rgb in frames:
        x = to_network_input(fit_to_input(rgb, prep.input_size), prep)
        out.append(signal.measure(OodInput(x[0], detector.features(x)[1][0], prep)))
    return np.array(out)


def auroc(unlike: np.ndarray, normal: np.ndarray) -> float:
    """P(an unlike frame scores above a normal one), ties counted half."""
    above = (unlike[:, None] > normal[None, :]).mean()
    ties = (unlike[:, None] == normal[None, :]).mean()
    return float(above + 0.5 * ties)


def gain(frames: list[np.ndarray], gains: tuple[float, float, float]) -> list[np.ndarray]:
    g = np.asarray(gains, dtype=np.float32)
    return [np.clip(f.astype(np.float32) * g, 0, 255).astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def frames() -> dict[str, list[np.ndarray]]:
    normal = [generate_frame(WorldConfig(), 44, i).rgb for i in range(16)]
    return {
        "normal": normal,
        "night": gain(normal, (0.3, 0.3, 0.3)),
        "cast": gain(normal, (1.4, 1.0, 0.6)),
        "blur": [cv2.blur(f, (9, 9)) for f in normal],
        "shifted": [generate_frame(WorldConfig(domain="shifted"), 45, i).rgb for i in range(16)],
    }


@pytest.fixture(scope="module")
def shipped() -> tuple[OodDetector, OodSuite]:
    suite = load_calibration(load_bundle(DEFAULT_BUNDLE))
    assert suite is not None
    return OodDetector(load_bundle(DEFAULT_BUNDLE), suite), suite


def test_calibration_round_trip_and_unfamiliarity(shipped: tuple[OodDetector, OodSuite]) -> None:
    _, suite = shipped
    assert [s.kind for s in suite.signals] == ["features", "image"]
    again = OodSuite.from_json(suite.to_json(), "test")
    assert json.loads(suite.to_json())["format"] == 2 and again.to_json() == suite.to_json()
    for signal in suite.signals:
        assert 0 < signal.slow_from < signal.stop_above
        assert signal.unfamiliarity(0.0) == 0.0 and signal.unfamiliarity(signal.stop_above) == 1.0


def test_format_1_files_still_load(shipped: tuple[OodDetector, OodSuite]) -> None:
    features = shipped[1].signal("features")
    assert isinstance(features, OodCalibration)
    old = json.loads(features.to_json())
    assert old["format"] == 1 and "kind" not in old
    (only,) = OodSuite.from_json(features.to_json(), "old").signals
    assert isinstance(only, OodCalibration) and np.array_equal(only.precision, features.precision)
    assert OodCalibration.from_json(shipped[1].to_json(), "new").tensors == features.tensors
    with pytest.raises(BundleError, match="calibrate again"):
        OodSuite.from_json(json.dumps({"format": 3, "signals": []}), "future")
    with pytest.raises(BundleError, match="unknown out-of-distribution signal 'tta'"):
        OodSuite.from_json(json.dumps({"format": 2, "signals": [{"kind": "tta"}]}), "other")


def test_normal_frames_are_familiar_and_unlike_ones_score_higher(
    shipped: tuple[OodDetector, OodSuite], frames: dict[str, list[np.ndarray]]
) -> None:
    detector, suite = shipped
    for kind, unlike in (("features", ("night", "shifted")), ("image", ("cast", "blur", "shifted"))):
        signal = suite.signal(kind)
        assert signal is not None
        normal = scores(detector, frames["normal"], kind)
        assert (normal < signal.stop_above).all(), kind  # never fires on the training world
        for name in unlike:
            assert np.median(scores(detector, frames[name], kind)) > np.median(normal), (kind, name)


def test_the_image_signal_sees_what_the_features_miss(
    shipped: tuple[OodDetector, OodSuite], frames: dict[str, list[np.ndarray]]
) -> None:
    """Blur: most frames past the image signal's slow-down point, few normal ones, and ranked above normal
    frames by the image signal always, by the features no better than chance. Colour casts: ranked above
    normal frames by the image signal almost always, and better than by the features (edge-sim-4, trained
    on white-balance-shifted closed-loop frames, ranks them 0.75 by its features; edge-sim-3 barely did).

    (This cast puts about 45 % of frames past the slow-down point, 43 % on 300 frames in the README's
    table, so "most frames" was a coin toss on 16 frames and flipped with a recalibration; the ranking is
    the property the signal is there for.)
    """
    detector, suite = shipped
    signal = suite.signal("image")
    assert signal is not None
    normal = scores(detector, frames["normal"], "image")
    assert np.mean(normal > signal.slow_from) <= 0.25
    assert np.mean(scores(detector, frames["blur"], "image") > signal.slow_from) >= 0.5
    normal_features = scores(detector, frames["normal"])
    blur_by_image = auroc(scores(detector, frames["blur"], "image"), normal)
    blur_by_features = auroc(scores(detector, frames["blur"]), normal_features)
    assert blur_by_image >= 0.95 and blur_by_image >= blur_by_features + 0.2, (
        blur_by_image,
        blur_by_features,
    )
    by_image = auroc(scores(detector, frames["cast"], "image"), normal)
    by_features = auroc(scores(detector, frames["cast"]), normal_features)
    assert by_image >= 0.9 and by_image > by_features, (by_image, by_features)
    # a dark wall filling the view (drives end in front of one) is neither night nor blur to it
    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal((28, 27, 30), 2.0, (224, 224, 3)), 0, 255).astype(np.uint8)
    assert scores(detector, [wall], "image")[0] < signal.stop_above


def test_a_coloured_wall_ahead_at_the_end_of_a_normal_drive_is_no_stop(
    shipped: tuple[OodDetector, OodSuite],
) -> None:
    """Tuning seed 11500's run 260 (`car sim eval --run 4294848465:shadow`): the car drives to the track's
    end, a wall of one colour fills the view, and the whole frame's grey-world chroma (once a group of the
    image signal) rose past the STOP limit. The room group sees floor and wall apart and stays below it."""
    from car.sim_world import make_world

    detector, suite = shipped
    signal = suite.signal("image")
    assert signal is not None
    world = make_world(4294848465, "shadow")
    frames = []
    while not world.reached_end():
        frames.append(world.render()[0])
        world.step(0.25, 1 / 10)
    assert len(frames) > 30
    assert (scores(detector, frames[-30:], "image") < signal.stop_above).all()


def test_the_stats_are_those_of_the_uint8_frame(frames: dict[str, list[np.ndarray]]) -> None:
    """Computed from the normalized network input, they are the statistics of the frame itself."""
    prep = load_bundle(DEFAULT_BUNDLE).manifest.preprocessing
    rgb = frames["normal"][0]
    stats = dict(zip(STATISTICS, image_statistics(to_network_input(rgb, prep)[0], prep), strict=True))
    small = rgb[::4, ::4].reshape(-1, 3).astype(np.float64) / 255
    r, g, b = small.mean(axis=0) + 1e-3
    assert stats["r_g"] == pytest.approx(np.log(r / g), abs=1e-4)
    assert stats["b_g"] == pytest.approx(np.log(b / g), abs=1e-4)
    assert stats["lum_mean"] == pytest.approx((small @ [0.299, 0.587, 0.114]).mean(), abs=1e-4)


@dataclass(frozen=True)
class Fixed:
    """A signal that scores every frame `value` (for the combination's rules)."""

    kind: ClassVar[str] = "fixed"
    value: float
    slow_from: float = 1.0
    stop_above: float = 3.0
    tensors: tuple[str, ...] = ()

    def measure(self, frame: OodInput) -> float:
        return self.value

    def unfamiliarity(self, score: float) -> float:
        return ramp(score, self.slow_from, self.stop_above)

    def to_doc(self) -> dict[str, object]:
        return {}


def test_combined_unfamiliarity_is_the_largest_and_any_limit_stops() -> None:
    frame = OodInput(
        np.zeros((3, 4, 4), np.float32), np.zeros(0), load_bundle(DEFAULT_BUNDLE).manifest.preprocessing
    )
    calm, uneasy = Fixed(1.5), Fixed(2.0, slow_from=1.0, stop_above=5.0)
    assert read_signals((calm, uneasy), frame).unfamiliarity == pytest.approx(0.25)
    assert read_signals((uneasy, calm), frame).unfamiliarity == pytest.approx(0.25)
    alarmed = Fixed(4.0, slow_from=1.0, stop_above=3.5)
    reading = read_signals((uneasy, alarmed, calm), frame)
    assert reading.out_of_distribution and reading.unfamiliarity == 1.0 and reading.limit == 3.5
    assert not read_signals((calm, uneasy), frame).out_of_distribution
    assert (
        OodReading(6.0, 1.0, 5.0, "image").detail()
        == "image statistics score 6.00 above the calibrated limit 5.00"
    )


def strict_bundle(tmp_path: Path, kind: str) -> Path:
    """A copy of the shipped bundle whose `kind` signal finds every frame unfamiliar: the features signal
    alone as a format-1 file, the image signal beside the shipped features signal as format 2."""
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle_dir)
    bundle = load_bundle(bundle_dir)
    suite = load_calibration(bundle)
    assert suite is not None
    signal = suite.signal(kind)
    assert isinstance(signal, OodCalibration | ImageStatsSignal)
    strict = dataclasses.replace(signal, slow_from=1e-6, stop_above=2e-6)
    if isinstance(strict, OodCalibration):
        text = strict.to_json()
    else:
        text = OodSuite(tuple(strict if s.kind == kind else s for s in suite.signals)).to_json()
    (bundle_dir / OOD_FILE).write_text(text)
    write_manifest(bundle_dir, with_files(bundle.manifest, **{OOD_ROLE: file_entry(bundle_dir, OOD_FILE)}))
    return bundle_dir


@pytest.mark.parametrize("kind", ["features", "image"])
def test_past_the_limit_the_car_stops_with_out_of_distribution(tmp_path: Path, kind: str) -> None:
    from car.config import with_overrides

    config = with_overrides(
        CarConfig(), [f"model.bundle={strict_bundle(tmp_path, kind)}", f"policy.ood_signals={kind}"]
    )
    report = evaluate(EvalSettings(runs=1, seed=4, kinds=("empty",)), config)
    (outcome,) = report.outcomes
    assert outcome.outcome == "false_stop" and outcome.ood_stop and report.ood_stops == 1
    off = evaluate(
        EvalSettings(runs=1, seed=4, kinds=("empty",)), with_overrides(config, ["policy.ood=false"])
    )
    assert off.ood_stops == 0 and off.outcomes[0].ood_faults == 0


def test_the_shipped_bundle_uses_both_signals_unless_the_config_names_one() -> None:
    from car.config import with_overrides
    from car.detectors import configured_detector
    from vision.bundle import load_bundle
    from vision.ood import OodDetector, build_checked_detector

    bundle = load_bundle(Path(__file__).resolve().parents[1] / "models" / "edge-sim")
    default = configured_detector(bundle, CarConfig())
    features = configured_detector(bundle, with_overrides(CarConfig(), ["policy.ood_signals=features"]))
    every = build_checked_detector(bundle)
    assert isinstance(default, OodDetector) and isinstance(features, OodDetector)
    assert isinstance(every, OodDetector)
    assert [s.kind for s in default.suite.signals] == ["features", "image"]
    assert [s.kind for s in features.suite.signals] == ["features"]
    assert [s.kind for s in every.suite.signals] == ["features", "image"]
