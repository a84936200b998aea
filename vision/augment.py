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
black can staying black. `ToneLift` lifts dark tones as flat, bright light and a camera's tone curve do.
`Augmentations` chains steps (room colours, the light, then sensor effects, as a camera would see that room,
then the published jitter); `SHARE_AUGMENTATIONS` is the registry `car train --NAME-augment P` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


@dataclass(frozen=True, slots=True)
class ToneLift:
    """With `probability`, the picture's dark tones lifted by a tone curve, out = 255·(x/255)^γ with γ drawn
    from `gamma`: how a camera's auto-exposure and tone curve render dark things in flat, bright light, the
    black can brown-grey and evenly lit rather than black (the shifted world's flat light, where the shipped
    model misses most). Geometry and so the label are unchanged."""

    probability: float = 0.5
    gamma: tuple[float, float] = (0.45, 0.85)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"tone lift probability {self.probability}: must lie in 0..1")
        low, high = self.gamma
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"tone lift gamma {self.gamma}: need 0 < low <= high <= 1 (below 1 lifts)")

    def describe(self) -> str:
        return f"ToneLift(probability={self.probability}, gamma={self.gamma})"

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.probability:
            return rgb
        gamma = float(rng.uniform(*self.gamma))
        table = np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)
        return cv2.LUT(rgb, table)


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


@dataclass(frozen=True, slots=True)
class ShareAugmentation:
    """An augmentation given to a share of the training images, switched on by `car train --NAME-augment P`
    (`TrainConfig.shares`). Adding one is its class and one line in `SHARE_AUGMENTATIONS`."""

    name: str
    make: Callable[[float], Augmentation]
    help: str

    @property
    def flag(self) -> str:
        return f"--{self.name}-augment"


SHARE_AUGMENTATIONS: Mapping[str, ShareAugmentation] = {
    a.name: a
    for a in (
        ShareAugmentation(
            "room",
            lambda p: RoomColours(probability=p),
            "share of training images repainted in other room colours (channels permuted, any hue; the black "
            "can stays black), before the camera effects (default 0)",
        ),
        ShareAugmentation(
            "tone",
            lambda p: ToneLift(probability=p),
            "share of training images with their dark tones lifted, as a camera renders dark things in flat, "
            "bright light (the black can brown-grey), before the camera effects (default 0)",
        ),
        ShareAugmentation(
            "sensor",
            lambda p: SensorAugment(probability=p),
            "share of training images given random camera effects (exposure, white balance, noise, motion "
            "blur, wide-angle lens), before ColorJitter (default 0: as published)",
        ),
    )
}
"""Share augmentations by name, in the order they apply (the room, its light, the camera; then the
published ColorJitter)."""


def check_shares(shares: Mapping[str, float]) -> None:
    """Every name in `shares` is in `SHARE_AUGMENTATIONS` and every share lies in 0..1, else a ValueError
    naming the `car train` flag."""
    unknown = sorted(set(shares) - set(SHARE_AUGMENTATIONS))
    if unknown:
        raise ValueError(f"augmentations {unknown}: unknown; choose from {', '.join(SHARE_AUGMENTATIONS)}")
    for name, share in shares.items():
        if not 0.0 <= share <= 1.0:
            flag = SHARE_AUGMENTATIONS[name].flag
            raise ValueError(f"{flag} {share}: must lie in 0..1 (a share of images)")


def training_augmentations(published: bool, shares: Mapping[str, float] | None = None) -> Augmentations:
    """The training recipe's steps: each share augmentation named in `shares` (name → share of images; 0:
    off) in the registry's order, then, if `published`, the published ColorJitter."""
    shares = shares or {}
    check_shares(shares)
    steps: list[Augmentation] = [
        a.make(shares[name]) for name, a in SHARE_AUGMENTATIONS.items() if shares.get(name, 0.0) > 0
    ]
    if published:
        steps.append(ColorJitter())
    return Augmentations(tuple(steps))
