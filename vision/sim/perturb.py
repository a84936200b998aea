"""Sensor and timing perturbations for closed-loop runs: one class per perturbation, one registry.

A perturbation draws its strength once per run (from the run's seed) and then acts on every frame through
up to four hooks, each a no-op by default:

- `image(rgb, rng)`: what the camera delivers (blur, exposure, white balance, noise, lens distortion);
- `drop(rng)`: the camera loses this frame (the loop waits for the next one, the car moves on meanwhile);
- `delay(rng)`: the frame reaches the loop this many seconds after capture (older than
  `loop.max_frame_age_s` is a `stale_frame` fault: STOP);
- `inference_delay(rng)`: inference takes this much longer (a latency spike; the car moves on meanwhile).

`PerturbedSource` and `PerturbedDetector` apply them around any frame source and detector on a pacing clock
(`car sim eval --perturb LIST`). The same run seed gives the same perturbations.

| name | what |
| --- | --- |
| `motion_blur` | a line blur of 3–9 px in a direction drawn per frame (shake and motion) |
| `exposure` | gain e^N(0, 0.45) for the run (clipped to 0.45–2.2), ±10 % flicker per frame |
| `white_balance` | red and blue gains 0.7–1.3 for the run |
| `noise` | Gaussian sensor noise σ 4–12 grey levels for the run, plus 0.2 % hot pixels |
| `fisheye` | barrel distortion k1 −0.15 to −0.35 (a wide-angle lens as on small robot cars) |
| `dropped_frames` | each frame lost with probability 0.05 |
| `late_frames` | 5 % of frames arrive 20–150 ms late |
| `latency_spikes` | 3 % of inferences take 30–200 ms longer |
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import TracebackType
from typing import Self

import cv2
import numpy as np

from vision.clock import Clock
from vision.detector import Detector
from vision.frame import Frame
from vision.sources import FrameSource


class Perturbation:
    """No-op hooks; a subclass overrides the ones it perturbs and draws its run's strength in __init__."""

    def __init__(self, rng: np.random.Generator) -> None:
        pass

    def image(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rgb

    def drop(self, rng: np.random.Generator) -> bool:
        return False

    def delay(self, rng: np.random.Generator) -> float:
        return 0.0

    def inference_delay(self, rng: np.random.Generator) -> float:
        return 0.0


def _gain(rgb: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    out = rgb.astype(np.float32) * np.asarray(gains, dtype=np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


class MotionBlur(Perturbation):
    def image(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        length = int(rng.integers(3, 10))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        angle = float(rng.uniform(0, 180))
        rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
        kernel = cv2.warpAffine(kernel, rotation, (length, length)).astype(np.float32)
        kernel /= max(float(kernel.sum()), 1e-6)
        return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REFLECT)


class Exposure(Perturbation):
    def __init__(self, rng: np.random.Generator) -> None:
        self.gain = float(np.clip(np.exp(rng.normal(0.0, 0.45)), 0.45, 2.2))

    def image(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        g = self.gain * float(rng.uniform(0.9, 1.1))
        return _gain(rgb, (g, g, g))


class WhiteBalance(Perturbation):
    def __init__(self, rng: np.random.Generator) -> None:
        self.gains = (float(rng.uniform(0.7, 1.3)), 1.0, float(rng.uniform(0.7, 1.3)))

    def image(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _gain(rgb, self.gains)


class Noise(Perturbation):
    def __init__(self, rng: np.random.Generator) -> None:
        self.sigma = float(rng.uniform(4.0, 12.0))

    def image(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = rgb.astype(np.float32) + rng.normal(0.0, self.sigma, rgb.shape).astype(np.float32)
        hot = rng.random(rgb.shape[:2]) < 0.002
        noisy[hot] = 255.0
        return np.clip(noisy, 0, 255).astype(np.uint8)


@lru_cache(maxsize=64)
def _barrel_maps(size: int, k1: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel samples the undistorted image for radial distortion r_src = r (1 + k1 r²)."""
    centre = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    nx, ny = (xs - centre) / centre, (ys - centre) / centre
    # k1 < 0 (barrel): the edges of the output show more of the scene, squeezed
    scale = 1.0 - k1 * (nx * nx + ny * ny) * 0.9
    return (nx * scale * centre + centre).astype(np.float32), (ny * scale * centre + centre).astype(
        np.float32
    )


class Fisheye(Perturbation):
    def __init__(self, rng: np.random.Generator) -> None:
        self.k1 = round(float(rng.uniform(-0.35, -0.15)), 2)

    def image(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        map_x, map_y = _barrel_maps(rgb.shape[0], self.k1)
        return cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class DroppedFrames(Perturbation):
    def drop(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < 0.05)


class LateFrames(Perturbation):
    def delay(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(0.02, 0.15)) if rng.random() < 0.05 else 0.0


class LatencySpikes(Perturbation):
    def inference_delay(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(0.03, 0.2)) if rng.random() < 0.03 else 0.0


PERTURBATIONS: Mapping[str, type[Perturbation]] = {
    "motion_blur": MotionBlur,
    "exposure": Exposure,
    "white_balance": WhiteBalance,
    "noise": Noise,
    "fisheye": Fisheye,
    "dropped_frames": DroppedFrames,
    "late_frames": LateFrames,
    "latency_spikes": LatencySpikes,
}
"""Perturbations by name: `--perturb` and `EvalSettings.perturbations` take their choices from here."""


def make_perturbations(names: Sequence[str], seed: int) -> list[Perturbation]:
    """The named perturbations with this run's strengths (same seed, same strengths)."""
    return [PERTURBATIONS[name](np.random.default_rng([seed, 97, i])) for i, name in enumerate(names)]


class PerturbedSource:
    """A frame source whose frames go through `perturbations` (see the module docstring)."""

    def __init__(
        self, source: FrameSource, perturbations: Sequence[Perturbation], clock: Clock, seed: int
    ) -> None:
        self.source = source
        self.perturbations = tuple(perturbations)
        self.clock = clock
        self.rng = np.random.default_rng([seed, 98])
        self.name = getattr(source, "name", "source")

    def open(self) -> Self:
        self.source.open()
        return self

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read(self, timeout: float) -> Frame:
        frame = self.source.read(timeout)
        if any(p.drop(self.rng) for p in self.perturbations):
            frame = self.source.read(timeout)
        rgb = frame.rgb
        for p in self.perturbations:
            rgb = p.image(rgb, self.rng)
        delay = sum(p.delay(self.rng) for p in self.perturbations)
        if delay > 0:
            self.clock.sleep_until(self.clock.now() + delay)
        return dataclasses.replace(frame, rgb=rgb)


class PerturbedDetector:
    """A detector whose inference sometimes takes longer (`inference_delay` hooks), on `clock`."""

    def __init__(
        self, detector: Detector, perturbations: Sequence[Perturbation], clock: Clock, seed: int
    ) -> None:
        self.detector = detector
        self.perturbations = tuple(perturbations)
        self.clock = clock
        self.rng = np.random.default_rng([seed, 99])
        self.input_size = detector.input_size

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.detector.predict(batch)
        delay = sum(p.inference_delay(self.rng) for p in self.perturbations)
        if delay > 0:
            self.clock.sleep_until(self.clock.now() + delay)
        return out

    def __getattr__(self, name: str) -> object:
        return getattr(self.detector, name)
