"""Measure one frame source as the car would read it: `car camera check`'s numbers.

A reader takes frames as fast as the source hands them over for a while, and from the frames' own capture
times (buffer timestamps for gst, the driver's time for OpenCV/picamera2) reports: delivered frame rate
(frames the source numbered, plus those its pipeline dropped, over the capture-time span: no wall-clock
window), frame-interval percentiles and jitter, capture-to-read latency, dropped frames (numbered but never
read: replaced by a newer one or dropped upstream), duplicated frames (the same image as the one before),
and brightness stability (mean and spread of the frames' mean brightness: auto exposure hunting shows
here). A snapshot (PNG) and a short clip (MP4) are saved so that one can see what the camera sees.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vision.frame import Frame
from vision.imageio import write_rgb
from vision.sources.base import EndOfStream, FrameSource, SourceTimeout, source_info

CLIP_FRAMES = 45  # the clip: the first 1.5 s at 30 fps


@dataclass(frozen=True, slots=True)
class CheckResult:
    frames: int  # frames read
    fps: float  # delivered by the source, from capture times
    interval_p50_ms: float
    interval_p99_ms: float
    jitter_ms: float  # standard deviation of the frame interval
    latency_p50_ms: float  # capture -> read
    latency_p99_ms: float
    dropped: int
    duplicated: int
    brightness_mean: float
    brightness_std: float
    format: str
    width: int
    height: int
    snapshot: str
    clip: str
    ended: str  # "" when the time ran out, else why the source ended (end of stream, timeout)
    info: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(slots=True)
class _Samples:
    seqs: list[int] = field(default_factory=list)
    captured: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    brightness: list[float] = field(default_factory=list)
    duplicated: int = 0
    last_digest: bytes = b""
    clip: list[np.ndarray] = field(default_factory=list)
    last: Frame | None = None

    def add(self, frame: Frame, t_read: float) -> None:
        self.seqs.append(frame.seq)
        self.captured.append(frame.t_capture)
        self.read.append(t_read)
        self.brightness.append(float(frame.rgb.mean()))
        digest = hashlib.blake2b(frame.rgb.tobytes(), digest_size=16).digest()
        self.duplicated += digest == self.last_digest
        self.last_digest = digest
        if len(self.clip) < CLIP_FRAMES:
            self.clip.append(frame.rgb)
        self.last = frame


def _collect(source: FrameSource, seconds: float, timeout: float) -> tuple[_Samples, str]:
    samples = _Samples()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = source.read(timeout)
        except EndOfStream as exc:
            return samples, f"end of stream: {exc}"
        except SourceTimeout as exc:
            return samples, f"no frame: {exc}"
        samples.add(frame, time.monotonic())
    return samples, ""


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000.0, 2) if values.size else float("nan")


def _write_clip(path: Path, frames: list[np.ndarray], fps: float) -> str:
    if not frames:
        return ""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps if fps > 0 else 30.0, (w, h))
    try:
        for rgb in frames:
            if rgb.shape[:2] == (h, w) and rgb.ndim == 3:
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return str(path)


def check_source(source: FrameSource, seconds: float, out_dir: Path, *, timeout: float = 2.0) -> CheckResult:
    """Open `source`, read it for `seconds`, close it, measure; snapshot + clip go to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with source:
        samples, ended = _collect(source, seconds, timeout)
        info = source_info(source)
        skipped = int(getattr(source, "skipped", 0))
        upstream = int(getattr(source, "upstream_dropped", 0))
    seqs = np.asarray(samples.seqs, np.int64)
    captured = np.asarray(samples.captured, np.float64)
    steps = np.diff(seqs)
    intervals = np.diff(captured) / np.maximum(steps, 1) if steps.size else np.zeros(0)
    span = float(captured[-1] - captured[0]) if captured.size > 1 else 0.0
    numbered = int(seqs[-1] - seqs[0]) + upstream if seqs.size > 1 else 0
    latency = np.asarray(samples.read) - captured
    brightness = np.asarray(samples.brightness)
    shape = samples.last.rgb.shape if samples.last is not None else (0, 0)
    fps = numbered / span if span > 0 else 0.0
    snapshot = ""
    if samples.last is not None:
        snapshot = str(out_dir / "snapshot.png")
        write_rgb(snapshot, samples.last.rgb)
    return CheckResult(
        frames=int(seqs.size),
        fps=round(fps, 2),
        interval_p50_ms=_pct(intervals, 50),
        interval_p99_ms=_pct(intervals, 99),
        jitter_ms=round(float(intervals.std()) * 1000.0, 2) if intervals.size else float("nan"),
        latency_p50_ms=_pct(latency, 50),
        latency_p99_ms=_pct(latency, 99),
        dropped=int((steps - 1).clip(min=0).sum()) + upstream if steps.size else upstream,
        duplicated=samples.duplicated,
        brightness_mean=round(float(brightness.mean()), 2) if brightness.size else float("nan"),
        brightness_std=round(float(brightness.std()), 2) if brightness.size else float("nan"),
        format=str(info.get("format", "")),
        width=int(shape[1]) if len(shape) > 1 else 0,
        height=int(shape[0]),
        snapshot=snapshot,
        clip=_write_clip(out_dir / "clip.mp4", samples.clip, fps),
        ended=ended,
        info={**info, "skipped": skipped, "upstream_dropped": upstream},
    )
