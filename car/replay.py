"""Replay a drive log: re-run the network and the policy on the logged frames, compare the decisions.

The frames in the log are the images the network saw (stored losslessly by default), the records hold the
faults the loop saw, and the run's metadata names the bundle (with its hashes) and the policy settings. So
the same bundle, the same preprocessing (`vision.preprocess`) and the same `Policy` must reproduce every
decision; `ReplayResult` counts those that do and lists the others. `render_video` draws a drive as MP4.

`DriveLogSource` plays a log's frames as a `FrameSource` (source.kind: replay), e.g. to drive another
network over a recorded drive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Self

import cv2
import numpy as np

from car.config import PolicyConfig, config_from_mapping
from car.drivelog import DriveLogReader, DriveMeta, bundle_matches
from car.errors import CarError
from car.policy import Policy, PolicyParams
from car.types import DriveRecord, Probabilities, Reason
from vision.bundle import ModelBundle, load_bundle
from vision.clock import MonotonicClock
from vision.detector import build_detector
from vision.frame import Frame
from vision.labels import STOP, label_name
from vision.preprocess import to_network_input
from vision.sources import EndOfStream, Pacer, SourceOpenError, SourceTimeout

# -- the log as a frame source -----------------------------------------------------------------------------


class DriveLogSource:
    """The frames of a drive log, in order, re-stamped with the current time (their capture times belong to
    another clock); the ground truth travels with them. Paced at `fps` (0: as fast as they decode)."""

    def __init__(self, path: str | Path, *, fps: float = 0.0, loop: bool = False) -> None:
        self.path = Path(path)
        self.name = f"replay:{self.path.name}"
        self.loop = loop
        self._pacer = Pacer(fps, MonotonicClock())
        self._reader: DriveLogReader | None = None
        self._records: Iterator[DriveRecord] | None = None
        self._seq = 0

    def open(self) -> Self:
        try:
            self._reader = DriveLogReader(self.path).open()
        except CarError as exc:
            raise SourceOpenError(str(exc)) from None
        self._records = self._reader.records()
        return self

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, timeout: float) -> Frame:
        if self._reader is None or self._records is None:
            raise SourceTimeout(f"{self.path}: replay source is not open")
        self._pacer.wait(timeout)
        for _attempt in range(2):
            for record in self._records:
                if record.rgb is None:
                    continue
                frame = Frame(self._seq, time.monotonic(), record.rgb, self.name, record.truth)
                self._seq += 1
                return frame
            if not self.loop:
                break
            self._records = self._reader.records()
        raise EndOfStream(f"{self.path}: all {self._seq} logged frames replayed")


# -- replaying decisions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disagreement:
    seq: int
    logged: int
    replayed: int
    logged_p_stop: float | None
    replayed_p_stop: float


@dataclass(frozen=True, slots=True)
class ReplayResult:
    log_path: Path
    bundle_name: str
    bundle_matches_log: bool
    frames: int
    agree: int
    disagree: int
    max_abs_prob_diff: float
    disagreements: tuple[Disagreement, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "agree": self.agree,
            "disagree": self.disagree,
            "max_abs_prob_diff": self.max_abs_prob_diff,
            "bundle": self.bundle_name,
            "bundle_matches_log": self.bundle_matches_log,
            "log": str(self.log_path),
            "disagreements": [
                {"seq": d.seq, "logged": label_name(d.logged), "replayed": label_name(d.replayed)}
                for d in self.disagreements[:100]
            ],
        }


def logged_policy_config(meta: DriveMeta) -> PolicyConfig:
    """The policy settings the drive ran with. A log written before a setting existed drove without it:
    `stop_memory_frames` missing from it means 0 (off), not today's default."""
    try:
        doc = json.loads(meta.config_json)
        config = config_from_mapping(doc, "drive log config")
    except (CarError, json.JSONDecodeError) as exc:
        raise CarError(f"drive log: its stored config cannot be read ({exc}); the log is damaged") from None
    logged = doc.get("policy") if isinstance(doc, dict) else None
    if not isinstance(logged, dict) or "stop_memory_frames" not in logged:
        return replace(config.policy, stop_memory_frames=0)
    return config.policy


def bundle_for(meta: DriveMeta, override: str | Path | None) -> tuple[ModelBundle, bool]:
    """The bundle to replay with, and whether it is the one that drove (`bundle_matches`)."""
    if override is not None:
        bundle = load_bundle(override)
        return bundle, bundle_matches(meta, bundle)
    path = Path(meta.bundle_path)
    if not path.is_dir():
        raise CarError(
            f"the bundle that drove ({meta.bundle_name}) is not at {path} any more; pass --model BUNDLE"
        )
    bundle = load_bundle(path)
    if not bundle_matches(meta, bundle):
        raise CarError(
            f"{path}: this bundle changed since the drive (manifest sha256 {bundle.sha256[:12]}, the log "
            f"says {meta.bundle_sha256[:12]}); pass --model BUNDLE to replay with another network anyway"
        )
    return bundle, True


def replay(
    log_path: str | Path,
    model: str | Path | None = None,
    runtime: str | None = None,
    threads: int = 1,
) -> ReplayResult:
    """Re-run network and policy over a drive log; see the module docstring."""
    with DriveLogReader(log_path) as log:
        meta = log.meta
        bundle, same = bundle_for(meta, model)
        detector = build_detector(bundle, runtime or meta.runtime, threads)
        prep = bundle.manifest.preprocessing
        policy_config = logged_policy_config(meta)
        threshold = (
            meta.threshold if same or policy_config.threshold is not None else bundle.manifest.threshold
        )
        policy = Policy(
            PolicyParams(
                threshold,
                policy_config.go_frames,
                policy_config.go_margin,
                stop_memory_frames=policy_config.stop_memory_frames,
            )
        )
        frames = agree = 0
        max_diff = 0.0
        disagreements: list[Disagreement] = []
        for record in log.records():
            if record.decision.reason is Reason.SHUTDOWN:
                policy.reset()
                continue
            probs: Probabilities | None = None
            if record.rgb is not None:
                if record.rgb.shape[:2] != (prep.input_size, prep.input_size):
                    raise CarError(
                        f"{log_path}: frame {record.seq} is {record.rgb.shape[1]}×{record.rgb.shape[0]} "
                        f"but the network takes {prep.input_size}×{prep.input_size}; use a matching bundle"
                    )
                out = detector.predict(to_network_input(record.rgb, prep))
                probs = Probabilities(float(out[0, 0]), float(out[0, 1]))
                if record.probs is not None:
                    diff = max(abs(probs.go - record.probs.go), abs(probs.stop - record.probs.stop))
                    max_diff = max(max_diff, diff)
            decision = policy.decide(probs, record.faults)
            if record.rgb is None:
                continue
            frames += 1
            if decision.label == record.decision.label:
                agree += 1
            else:
                disagreements.append(
                    Disagreement(
                        record.seq,
                        record.decision.label,
                        decision.label,
                        None if record.probs is None else record.probs.stop,
                        probs.stop if probs is not None else float("nan"),
                    )
                )
    return ReplayResult(
        log_path=Path(log_path),
        bundle_name=bundle.manifest.name,
        bundle_matches_log=same,
        frames=frames,
        agree=agree,
        disagree=frames - agree,
        max_abs_prob_diff=max_diff,
        disagreements=tuple(disagreements),
    )


# -- video ---------------------------------------------------------------------------------------------------

GREEN = (40, 200, 60)
RED = (230, 40, 40)
AMBER = (240, 170, 20)


def annotate(record: DriveRecord, scale: int = 2) -> np.ndarray:
    """One video frame (RGB): the image, a P(STOP) bar, the decision, faults and ground truth."""
    size = 224 * scale
    if record.rgb is not None:
        img = cv2.resize(record.rgb, (size, size), interpolation=cv2.INTER_NEAREST)
    else:
        img = np.full((size, size, 3), 30, np.uint8)
    panel = np.full((64, size, 3), 20, np.uint8)
    stop = record.decision.label == STOP
    colour = RED if stop else GREEN
    cv2.rectangle(img, (0, 0), (size - 1, size - 1), colour, 4)
    p_stop = record.probs.stop if record.probs is not None else None
    if p_stop is not None:
        cv2.rectangle(panel, (8, 8), (8 + int((size - 16) * p_stop), 22), AMBER, -1)
        cv2.rectangle(panel, (8, 8), (size - 8, 22), (200, 200, 200), 1)
    text = f"#{record.seq} {record.decision.label_name} P(STOP)=" + (
        "--" if p_stop is None else f"{p_stop:.2f}"
    )
    cv2.putText(panel, text, (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    extra = ",".join(f.kind.value for f in record.faults) or record.decision.reason.value
    if record.truth is not None:
        extra += f" | truth {label_name(record.truth.label)}"
        if record.truth.distance_m is not None:
            extra += f" {record.truth.distance_m:.2f} m"
    cv2.putText(panel, extra[:60], (8, 58), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (220, 220, 220), 1, cv2.LINE_AA)
    return np.vstack([img, panel])


def render_video(log_path: str | Path, out: str | Path, fps: float | None = None) -> int:
    """Write the drive as an MP4 (mp4v) with probability, decision and faults drawn on; returns frames."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with DriveLogReader(log_path) as log:
        rate = fps or float(json.loads(log.meta.config_json).get("loop", {}).get("rate_hz") or 30.0)
        writer: cv2.VideoWriter | None = None
        n = 0
        try:
            for record in log.records():
                frame = annotate(record)
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), rate, (w, h))
                    if not writer.isOpened():
                        raise CarError(
                            f"{out}: cannot write an MP4 video there; check the folder and the name"
                        )
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                n += 1
        finally:
            if writer is not None:
                writer.release()
    return n
