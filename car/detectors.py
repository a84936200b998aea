"""The detector a config asks for: the bundle's network at `model.runtime` and `model.threads`, scoring
unfamiliarity on the calibration's `policy.ood_signals` when `policy.ood` is on (`vision.ood`)."""

from __future__ import annotations

from car.config import CarConfig
from vision.bundle import ModelBundle
from vision.detector import Detector
from vision.ood import build_checked_detector, parse_signals


def configured_detector(bundle: ModelBundle, config: CarConfig) -> Detector:
    return build_checked_detector(
        bundle,
        config.model.runtime,
        config.model.threads,
        config.policy.ood,
        parse_signals(config.policy.ood_signals),
    )
