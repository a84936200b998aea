"""Training augmentation: the published ColorJitter(0.2, 0.2, 0.2, 0.2), on RGB uint8 images.

Same semantics as torchvision's ColorJitter (brightness, contrast, saturation factors drawn from
[1-0.2, 1+0.2], hue shift from [-0.2, 0.2] of a turn, the four applied in a random order, clamped to the
valid range after each), written with numpy/OpenCV because torchvision's hue step costs ~7 ms per 224×224
image on this CPU, more than the network's own training step. Output is RGB uint8 again, so augmented
images go through the one preprocessing path (`vision.preprocess.to_network_input`) like any other frame.
Randomness comes from an explicit `numpy.random.Generator`: a seed gives the same images every time.

`SensorAugment` adds camera effects (exposure, white balance, noise, motion blur, a wide-angle lens) drawn
from the simulator's own image perturbations (`vision.sim.perturb`), so a network learns that a washed-out or
cyan frame with a can in it is still a can. `RoomColours` repaints the room (channel permutation, any hue), a
black can staying black. `Augmentations` chains steps (room colours, then sensor effects, as a camera would
see that room, then the published jitter).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from vision.sim.perturb import PERTURBATIONS

_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

Adjust = Callable[[np.ndarray, float], np.ndarray]


def _gray(img: np.ndarray) -> np.ndarray:
    return img @ _GRAY_WEIGHTS


def _brightness(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(img * np.float32(factor), 0.0, 255.0)


def _contrast(img: np.ndarray, factor: float) -> np.ndarray:
    mean = np.float32(_gray(img).mean())
    return np.clip((img - mean) * np.float32(factor) + mean, 0.0, 255.0)


def _saturation(img: np.ndarray, factor: float) -> np.ndarray:
    gray = _gray(img)[..., None]
    return np.clip((img - gray) * np.float32(factor) + gray, 0.0, 255.0)


def _hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by `shift` turns (OpenCV's full-range HSV: 256 hue steps per turn)."""
    steps = round(shift * 256) % 256
    if steps == 0:  # the HSV round trip is lossy; skip it when there is nothing to rotate
        return img
    hsv = cv2.cvtColor(np.round(img).astype(np.uint8), cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + steps) % 256
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL).astype(np.float32)


@dataclass(frozen=True, slots=True)
class ColorJitter:
    """Random brightness/contrast/saturation/hue, as published: ColorJitter(0.2, 0.2, 0.2, 0.2)."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.2

    def describe(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"ColorJitter expects an RGB uint8 H×W×3 image, got {rgb.dtype} {rgb.shape}")
        steps: tuple[tuple[Adjust, float], ...] = (
            (_brightness, rng.uniform(1 - self.brightness, 1 + self.brightness)),
            (_contrast, rng.uniform(1 - self.contrast, 1 + self.contrast)),
            (_saturation, rng.uniform(1 - self.saturation, 1 + self.saturation)),
            (_hue, rng.uniform(-self.hue, self.hue)),
        )
        img = rgb.astype(np.float32)
        for index in rng.permutation(len(steps)):
            adjust, value = steps[int(index)]
            img = adjust(img, float(value))
        return np.round(img).astype(np.uint8)


SENSOR_EFFECTS = ("exposure", "white_balance", "noise", "motion_blur", "fisheye")
"""The image-only perturbations `SensorAugment` draws from (the timing ones do not change a frame)."""


@dataclass(frozen=True, slots=True)
class SensorAugment:
    """With `probability`, each of `effects` applied with probability `each`, at a strength drawn afresh
    (the same draw `car sim eval --perturb` makes once per run). Labels are unchanged: none of the effects
    moves the can nearer or further."""

    probability: float = 0.5
    each: float = 0.5
    effects: tuple[str, ...] = SENSOR_EFFECTS

    def __post_init__(self) -> None:
        for name, value in (("probability", self.probability), ("each", self.each)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"sensor augmentation {name} {value}: must lie in 0..1")
        unknown = [e for e in self.effects if e not in PERTURBATIONS]
        if unknown:
            raise ValueError(f"sensor effects {unknown}: unknown; choose from {', '.join(PERTURBATIONS)}")

    def describe(self) -> str:
        effects = ",".join(self.effects)
        return f"SensorAugment(probability={self.probability}, each={self.each}, effects={effects})"

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.probability:
            return rgb
        for name in self.effects:
            if rng.random() < self.each:
                rgb = PERTURBATIONS[name](rng).image(rgb, rng)
        return rgb


@dataclass(frozen=True, slots=True)
class RoomColours:
    """With `probability`, the room in other colours: the RGB channels permuted, then the hue turned by any
    amount. A black can stays black (grey has no hue, and a permutation keeps it grey), so the label holds;
    every coloured floor, wall and piece of furniture becomes one the training world never had. Meant for a
    network that must see the can in rooms it was not trained in; `car sim eval --domain shifted` measures
    that, and is never trained on."""

    probability: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"room colour augmentation probability {self.probability}: must lie in 0..1")

    def describe(self) -> str:
        return f"RoomColours(probability={self.probability})"

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.probability:
            return rgb
        permuted = rgb[:, :, rng.permutation(3)].astype(np.float32)
        return np.round(_hue(permuted, float(rng.uniform(-0.5, 0.5)))).astype(np.uint8)


class Augmentation(Protocol):
    def describe(self) -> str: ...

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Augmentations:
    """Augmentation steps applied in order to each image of a batch, each image with its own draws."""

    steps: Sequence[Augmentation]

    def describe(self) -> str:
        return " + ".join(step.describe() for step in self.steps) or "none"

    def batch(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.steps:
            return images
        out = []
        for image in images:
            img = image
            for step in self.steps:
                img = step(img, rng)
            out.append(img)
        return np.stack(out)


def training_augmentations(published: bool, sensor: float, room: float = 0.0) -> Augmentations:
    """The training recipe's steps: other room colours with probability `room` (0: none), camera effects
    with probability `sensor` (0: none), then, if `published`, the published ColorJitter."""
    steps: list[Augmentation] = [RoomColours(probability=room)] if room > 0 else []
    if sensor > 0:
        steps.append(SensorAugment(probability=sensor))
    if published:
        steps.append(ColorJitter())
    return Augmentations(tuple(steps))
