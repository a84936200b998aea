"""Shared pieces of the explain tests (no tests here): a tiny can-detecting network, its bundle, and a
short simulated drive written into a real drive log.

The network is a can detector by construction rather than by training (training one would cost most of
the test budget): its first convolution measures darkness, and its STOP output sums darkness below the
horizon. It is a genuine chain network of the same layer types as SeedNet/EdgeNet, exported through the
project's own bundle builder, so the audit walks exactly the path it walks for a real bundle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from car.drivelog import BundleFile, DriveLogWriter, DriveMeta, utc_now
from car.types import (
    CommandKind,
    CommandRecord,
    Decision,
    DriveRecord,
    Fault,
    FaultKind,
    Probabilities,
    Reason,
    StageTimings,
)
from vision.bundle import MANIFEST_NAME, ModelBundle
from vision.detector import OnnxDetector
from vision.export import LabelledFrames, build_bundle
from vision.frame import GroundTruth
from vision.labels import GO, STOP
from vision.networks import ARCHITECTURES, register
from vision.preprocess import Preprocessing, fit_to_input, preprocess

ARCH = "tiny-can-test"
SIZE = 64
PREP = Preprocessing(input_size=SIZE)


class TinyCanNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.MaxPool2d(2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(4 * 16 * 16, 2), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@contextlib.contextmanager
def tiny_arch_registered() -> Iterator[None]:
    """Make the bundle builder and loader know ARCH for a while. Registered only inside the explain
    tests' fixtures, never at import: other tests enumerate the registry of shipped architectures."""
    added = ARCH not in ARCHITECTURES
    if added:
        register(ARCH)(TinyCanNet)
    try:
        yield
    finally:
        if added:
            ARCHITECTURES.pop(ARCH, None)


def can_detector() -> TinyCanNet:
    """Channel 0 = darkness (mean normalised value below −1.5), STOP = Σ darkness below the horizon.

    On the test drive P(STOP) crosses 0.5 where the can comes within ~0.35 m (the STOP distance)."""
    net = TinyCanNet().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        conv1, conv2, linear = net.features[0], net.features[3], net.classifier[2]
        assert isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d) and isinstance(linear, nn.Linear)
        conv1.weight[0, :, 1, 1] = -1.0 / 3.0
        assert conv1.bias is not None and linear.bias is not None
        conv1.bias[0] = -1.5
        conv2.weight[0, 0, 1, 1] = 1.0
        below = torch.zeros(4, 16, 16)
        below[0, 6:, :] = 1.0
        linear.weight[STOP] = below.flatten() * 2.0
        linear.weight[GO] = -below.flatten() * 2.0
        linear.bias[STOP] = -9.2
        linear.bias[GO] = 9.2
    return net


def random_network(seed: int) -> TinyCanNet:
    torch.manual_seed(seed)
    return TinyCanNet().eval()


def make_bundle(root: Path, network: nn.Module, name: str = "tiny-can", *, int8: bool = False) -> ModelBundle:
    calib = None
    if int8:
        frames = drive_frames(16, seed=11)
        images = np.stack([fit_to_input(rgb, SIZE) for rgb, _ in frames])
        calib = LabelledFrames(images, np.asarray([t.label for _, t in frames]))
    return build_bundle(network, ARCH, root / name, calib, int8=int8, name=name, prep=PREP)


def bundle_files(bundle: ModelBundle) -> tuple[BundleFile, ...]:
    files = [BundleFile(role, f.path, f.sha256, f.bytes) for role, f in bundle.manifest.files.items()]
    files.append(BundleFile("manifest", MANIFEST_NAME, bundle.sha256, 0))
    return tuple(sorted(files, key=lambda f: f.role))


def drive_frames(ticks: int, seed: int = 3) -> list[tuple[np.ndarray, GroundTruth]]:
    """The car driving at a can on its path: (RGB, ground truth) per tick, 0.1 s apart, at 0.5 m/s from
    the first tick (no acceleration ramp, so 16 ticks bring the can close enough to be a STOP)."""
    from vision.sim import Placement, World, WorldConfig, sample_scene

    config = WorldConfig(accel_mps2=1e9)
    scene = sample_scene(np.random.default_rng(seed), "can_path", config, Placement(ahead=(0.9, 1.0)))
    world = World(config, scene, seed=seed)
    out: list[tuple[np.ndarray, GroundTruth]] = []
    for _ in range(ticks):
        rgb, truth = world.render()
        out.append((rgb, truth))
        world.step(0.5, 0.1)
    return out


def write_drive(
    path: Path, bundle: ModelBundle, ticks: int = 16, seed: int = 3, runtime: str = "fp32"
) -> Path:
    """A real drive log: the bundle's ONNX decides each simulated frame; one tick has no frame (fault),
    one has a stale-frame fault."""
    detector = OnnxDetector(bundle, runtime)
    meta = DriveMeta(
        started_utc=utc_now(),
        source_kind="sim",
        source_id=f"test:seed={seed}",
        bundle_name=bundle.manifest.name,
        bundle_path=str(bundle.root),
        bundle_sha256=bundle.sha256,
        runtime=runtime,
        threshold=bundle.manifest.threshold,
        frame_format="png",
        config_json="{}",
        versions=(("test", "1"),),
        bundle_files=bundle_files(bundle),
    )
    with DriveLogWriter(path, meta) as log:
        for seq, (rgb, truth) in enumerate(drive_frames(ticks, seed)):
            if seq == 5:
                decision = Decision(STOP, Reason.FAULT, None)
                log.submit(_record(seq, None, decision, (Fault(FaultKind.NO_FRAME, "test"),), None))
                continue
            p = detector.predict(preprocess(rgb, PREP))[0]
            label = STOP if p[STOP] >= meta.threshold else GO
            decision = Decision(
                label,
                Reason.STOP_PROBABILITY if label == STOP else Reason.GO_CONFIDENT,
                Probabilities(float(p[GO]), float(p[STOP])),
            )
            faults = (Fault(FaultKind.STALE_FRAME, "test"),) if seq == 9 else ()
            log.submit(_record(seq, rgb, decision, faults, truth))
    return path


def _record(
    seq: int, rgb: np.ndarray | None, decision: Decision, faults: tuple[Fault, ...], truth: GroundTruth | None
) -> DriveRecord:
    kind = CommandKind.STOP if decision.label == STOP else CommandKind.DRIVE
    return DriveRecord(
        seq=seq,
        t_tick=0.1 * seq,
        frame_seq=None if rgb is None else seq,
        t_capture=None if rgb is None else 0.1 * seq,
        source="sim",
        rgb=rgb,
        decision=decision,
        command=CommandRecord(kind, 0.0 if kind == CommandKind.STOP else 0.5, seq, 0.1 * seq),
        ack=None,
        faults=faults,
        timings=StageTimings(),
        truth=truth,
    )
