"""Shared pieces of the fleet tests (no tests here): short real drive logs of the shipped `edge-sim` bundle.

The shipped bundle is used (not the explain tests' tiny network) because Ray's and the process pool's worker
processes must load the network from its registered architecture, as they do for a user.
"""

from __future__ import annotations

from pathlib import Path

from car.drivelog import DriveLogWriter, DriveMeta, utc_now
from car.types import Decision, Fault, FaultKind, Probabilities, Reason
from tests.test_explain_support import _record, bundle_files, drive_frames
from vision.bundle import ModelBundle, load_bundle
from vision.detector import OnnxDetector
from vision.labels import GO, STOP
from vision.preprocess import preprocess

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "edge-sim"


def shipped_bundle() -> ModelBundle:
    return load_bundle(SHIPPED)


def write_shipped_drive(path: Path, bundle: ModelBundle, ticks: int = 8, seed: int = 3) -> Path:
    """A real drive log decided by the bundle's ONNX network on simulated frames; tick 2 has no frame."""
    detector = OnnxDetector(bundle, "fp32")
    prep = bundle.manifest.preprocessing
    meta = DriveMeta(
        started_utc=utc_now(),
        source_kind="sim",
        source_id=f"test:seed={seed}",
        bundle_name=bundle.manifest.name,
        bundle_path=str(bundle.root),
        bundle_sha256=bundle.sha256,
        runtime="fp32",
        threshold=bundle.manifest.threshold,
        frame_format="png",
        config_json="{}",
        versions=(("test", "1"),),
        bundle_files=bundle_files(bundle),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with DriveLogWriter(path, meta) as log:
        for seq, (rgb, truth) in enumerate(drive_frames(ticks, seed)):
            if seq == 2:
                decision = Decision(STOP, Reason.FAULT, None)
                log.submit(_record(seq, None, decision, (Fault(FaultKind.NO_FRAME, "test"),), None))
                continue
            p = detector.predict(preprocess(rgb, prep))[0]
            label = STOP if p[STOP] >= meta.threshold else GO
            reason = Reason.STOP_PROBABILITY if label == STOP else Reason.GO_CONFIDENT
            log.submit(
                _record(
                    seq, rgb, Decision(label, reason, Probabilities(float(p[GO]), float(p[STOP]))), (), truth
                )
            )
    return path
