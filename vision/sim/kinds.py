"""Scene samplers, one per kind, in a registry: what a generated frame (or a drive) contains.

Every scene gets a random floor (wood, tiles, carpet, concrete; colour, scale, rotation), a background wall
at a random distance, furniture-like clutter, random lighting, exposure, white balance, noise, blur and
JPEG quality, and a slightly different camera height and tilt. The kind then adds its main content:

| kind | content | label (at placement) |
| --- | --- | --- |
| `empty` | nothing but the room | GO |
| `can_path` | the black tin can in the path, nearer than the cutoff | STOP |
| `can_far` | the can in the path, beyond the cutoff | GO |
| `can_side` | the can beside the path, near | GO |
| `dark_mat` | a dark mat/rug lying on the path (hard negative) | GO |
| `shadow` | a cast shadow across the path (hard negative) | GO |
| `dark_object_side` | a dark box, bin or bag beside the path (hard negative) | GO |
| `dark_background` | dark furniture or a dark wall in the background (hard negative) | GO |
| `can_before_dark` | the can in the path, near, in front of dark furniture (hard positive; weight 0) | STOP |

A drive's scene (a `Placement` with `ahead`) keeps its track clear: furniture that would stand across the
car's path before the track's end plus `WorldConfig.track_clearance_m` is moved back towards the wall or
aside (`_Builder.keep_clear`), and the wall stands beyond that. Only the can, and in `can_before_dark` the
dark furniture behind it, stand in the path. Single frames are drawn as they always were.

Positions are drawn in the car's frame at the scene's start pose, so the label holds by construction;
the ground truth itself is always recomputed from geometry (`vision.sim.world.ground_truth`). Between
the STOP and GO distance/lateral ranges a small gap (`DatasetGaps`) keeps generated labels unambiguous
under camera jitter; the World's per-frame labels use the exact cutoff.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, TypeVar

import numpy as np

from vision.errors import VisionError
from vision.sim.config import WorldConfig
from vision.sim.domains import apply_domain
from vision.sim.scene import RGB, Box, CarPose, Cylinder, FloorLook, Lighting, Mat, Scene, Shadow, WallLook
from vision.sim.textures import FLOOR_TEXTURES, VARIANTS

_Solid = TypeVar("_Solid", Box, Cylinder)


class Draws:
    """Uniform and normal variates taken from a Generator in blocks of 256: a scene needs ~100 draws,
    and one numpy call per draw would cost more than rendering the floor. Deterministic in the generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._uniform: list[float] = []
        self._normal: list[float] = []

    def random(self) -> float:
        if not self._uniform:
            self._uniform = self._rng.random(256).tolist()
        return self._uniform.pop()

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> float:
        if not self._normal:
            self._normal = self._rng.standard_normal(256).tolist()
        return mean + sd * self._normal.pop()

    def integers(self, low: int, high: int | None = None) -> int:
        """An int in [low, high), or in [0, low) when `high` is None (like numpy's)."""
        if high is None:
            low, high = 0, low
        return low + min(int(self.random() * (high - low)), high - low - 1)


@dataclass(frozen=True, slots=True)
class DatasetGaps:
    """Margins between the STOP and GO placements of generated frames (metres)."""

    distance_inside: float = 0.03
    distance_outside: float = 0.06
    lateral: float = 0.03


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a kind puts its main object: `ahead` = (nearest, farthest) forward distance, or None for the
    kind's own frame range (a single frame); a drive passes e.g. (1.0, 2.5)."""

    ahead: tuple[float, float] | None = None
    gaps: DatasetGaps = DatasetGaps()


FLOOR_PALETTES: Mapping[str, tuple[RGB, ...]] = {
    "wood": (
        (0.62, 0.45, 0.30),
        (0.45, 0.30, 0.18),
        (0.75, 0.60, 0.42),
        (0.38, 0.26, 0.17),
        (0.55, 0.50, 0.45),
    ),
    "tiles": (
        (0.80, 0.80, 0.78),
        (0.60, 0.60, 0.62),
        (0.72, 0.62, 0.50),
        (0.60, 0.35, 0.25),
        (0.42, 0.42, 0.45),
    ),
    "carpet": (
        (0.45, 0.45, 0.48),
        (0.30, 0.35, 0.50),
        (0.60, 0.55, 0.45),
        (0.50, 0.25, 0.25),
        (0.36, 0.36, 0.36),
    ),
    "concrete": ((0.55, 0.55, 0.55), (0.62, 0.60, 0.56), (0.45, 0.46, 0.48)),
}
TILE_METRES: Mapping[str, tuple[float, float]] = {
    "wood": (0.8, 1.4),
    "tiles": (0.5, 1.2),
    "carpet": (0.25, 0.6),
    "concrete": (1.5, 3.0),
}
WALL_COLOURS: tuple[RGB, ...] = (
    (0.85, 0.84, 0.80),
    (0.78, 0.74, 0.66),
    (0.70, 0.75, 0.78),
    (0.80, 0.72, 0.70),
    (0.60, 0.62, 0.60),
    (0.50, 0.45, 0.40),
)


def _jitter(rng: Draws, colour: RGB, amount: float) -> RGB:
    lo, hi = 1 - amount, 1 + amount
    r, g, b = (min(max(c * float(rng.uniform(lo, hi)), 0.0), 1.0) for c in colour)
    return (r, g, b)


def _grey(rng: Draws, low: float, high: float, tint: float = 0.08) -> RGB:
    v = rng.uniform(low, high)
    r, g, b = (float(v * rng.uniform(1 - tint, 1 + tint)) for _ in range(3))
    return (r, g, b)


def _side(rng: Draws) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _bright_colour(rng: Draws) -> RGB:
    r, g, b = rng.uniform(0.25, 0.95), rng.uniform(0.25, 0.95), rng.uniform(0.25, 0.95)
    return (r, g, b)


def _dark_colour(rng: Draws) -> RGB:
    return _grey(rng, 0.03, 0.14, tint=0.25)


@dataclass(slots=True)
class _Builder:
    """Accumulates a scene's objects in the car's frame (lateral, forward) and converts to world."""

    rng: Draws
    config: WorldConfig
    start: CarPose
    wall_forward: float
    clear_to: float = 0.0
    """Drives: furniture keeps out of the car's path nearer than this (`WorldConfig.track_clearance_m`)."""
    can: Cylinder | None = None
    cylinders: list[Cylinder] | None = None
    boxes: list[Box] | None = None
    mats: list[Mat] | None = None
    shadows: list[Shadow] | None = None

    def __post_init__(self) -> None:
        self.cylinders, self.boxes, self.mats, self.shadows = [], [], [], []

    def world(self, lateral: float, forward: float) -> tuple[float, float]:
        return self.start.to_world(lateral, forward)

    def add_can(self, lateral: float, forward_surface: float) -> None:
        rng = self.rng
        radius = rng.uniform(0.033, 0.042)
        height = rng.uniform(0.095, 0.13)
        x, z = self.world(lateral, forward_surface + radius)
        colour = _grey(rng, 0.035, 0.09, tint=0.15)
        self.can = Cylinder(
            x, z, radius, height, colour, specular=rng.uniform(0.25, 0.7), shininess=rng.uniform(8, 40)
        )

    def add_cylinder(self, lateral: float, forward: float, radius: float, height: float, colour: RGB) -> None:
        x, z = self.world(lateral, forward)
        spec = float(self.rng.uniform(0.0, 0.3))
        assert self.cylinders is not None
        self.cylinders.append(Cylinder(x, z, radius, height, colour, specular=spec, shininess=12.0))

    def add_box(
        self,
        lateral: float,
        forward: float,
        size: tuple[float, float, float],
        colour: RGB,
        base_y: float = 0.0,
    ) -> None:
        x, z = self.world(lateral, forward)
        yaw = self.start.yaw + float(self.rng.normal(0, 0.25))
        assert self.boxes is not None
        self.boxes.append(Box(x, z, size[0], size[1], size[2], colour, yaw, base_y))

    def add_mat(self, lateral: float, forward: float, size: tuple[float, float], colour: RGB) -> None:
        x, z = self.world(lateral, forward)
        assert self.mats is not None
        self.mats.append(Mat(x, z, size[0], size[1], colour, self.start.yaw + float(self.rng.normal(0, 0.3))))

    def keep_clear(self, boxes_from: int, cylinders_from: int, *, backwards: bool) -> None:
        """Move the piece of furniture made of the boxes and cylinders added since these counts out of the
        car's path nearer than `clear_to`: back towards the wall if it fits there (`backwards`), else
        sideways, to the side its middle is on. Moves only: the scene's draws stay as they were."""
        assert self.boxes is not None and self.cylinders is not None
        if self.clear_to <= 0:
            return  # a single frame: drawn as it always was
        boxes, cylinders = self.boxes[boxes_from:], self.cylinders[cylinders_from:]
        points = [self.start.to_car(x, z) for box in boxes for x, z in box.footprint()]
        for c in cylinders:
            lateral, forward = self.start.to_car(c.x, c.z)
            points += [(lateral - c.radius, forward - c.radius), (lateral + c.radius, forward + c.radius)]
        if not points:
            return
        left, right = min(p[0] for p in points), max(p[0] for p in points)
        near, far = min(p[1] for p in points), max(p[1] for p in points)
        corridor = self.config.half_path_m
        if near >= self.clear_to or left >= corridor or right <= -corridor:
            return
        step = (0.0, self.clear_to - near)
        if not backwards or far + step[1] > self.wall_forward - 0.02:
            step = (corridor - left, 0.0) if left + right >= 0 else (-corridor - right, 0.0)
        self.boxes[boxes_from:] = [self._moved(b, step) for b in boxes]
        self.cylinders[cylinders_from:] = [self._moved(c, step) for c in cylinders]

    def _moved(self, thing: _Solid, step: tuple[float, float]) -> _Solid:
        """`thing` moved by (lateral, forward) `step` in the car's frame."""
        lateral, forward = self.start.to_car(thing.x, thing.z)
        x, z = self.world(lateral + step[0], forward + step[1])
        return replace(thing, x=x, z=z)

    def add_shadow(self, lateral: float, forward: float, size: tuple[float, float], darkness: float) -> None:
        x, z = self.world(lateral, forward)
        rng = self.rng
        assert self.shadows is not None
        self.shadows.append(
            Shadow(
                x,
                z,
                size[0],
                size[1],
                darkness,
                self.start.yaw + float(rng.uniform(-0.8, 0.8)),
                softness=float(rng.uniform(0.01, 0.08)),
                elliptic=bool(rng.random() < 0.4),
            )
        )


# -- the room -------------------------------------------------------------------------------------
def _floor(rng: Draws) -> FloorLook:
    names = tuple(FLOOR_TEXTURES)
    texture = names[int(rng.integers(len(names)))]
    tint = _jitter(rng, FLOOR_PALETTES[texture][int(rng.integers(len(FLOOR_PALETTES[texture])))], 0.15)
    low, high = TILE_METRES[texture]
    return FloorLook(
        texture=texture,
        variant=int(rng.integers(VARIANTS)),
        tint=tint,
        metres_per_tile=float(rng.uniform(low, high)),
        rotation=float(rng.integers(2) * math.pi / 2 + rng.normal(0, 0.05)),
        offset=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))),
    )


def _lighting(rng: Draws) -> Lighting:
    warm = rng.uniform(-0.12, 0.12)
    return Lighting(
        exposure=float(math.exp(rng.normal(0.2, 0.22))),
        ambient=float(rng.uniform(0.35, 0.7)),
        light_azimuth=float(rng.uniform(-math.pi, math.pi)),
        light_elevation=float(rng.uniform(0.5, 1.3)),
        shadow_strength=float(rng.uniform(0.25, 0.6)),
        ramp=(float(rng.normal(0, 0.25)), float(rng.normal(0, 0.25))),
        vignette=float(rng.uniform(0.0, 0.3)),
        white_balance=(1.0 + warm, 1.0, 1.0 - warm),
        noise_sigma=float(rng.uniform(0.005, 0.03)),
        blur_sigma=float(rng.uniform(0.0, 1.0)),
        jpeg_quality=int(rng.integers(35, 90)) if rng.random() < 0.15 else None,
    )


def _furniture(
    b: _Builder,
    lateral: float,
    forward: float,
    colour: RGB,
    *,
    clear: Literal["sideways", "backwards"] | None = "sideways",
) -> None:
    """One piece of furniture-like clutter: a cabinet, sofa, table, box or bin. In a drive it keeps out of
    the car's path (`_Builder.keep_clear`): moved `sideways`, or `backwards` towards the wall where it fits;
    `clear=None` leaves it where it was put (the furniture that stands behind the can on purpose)."""
    assert b.boxes is not None and b.cylinders is not None
    boxes_from, cylinders_from = len(b.boxes), len(b.cylinders)
    _furniture_piece(b, lateral, forward, colour)
    if clear is not None:
        b.keep_clear(boxes_from, cylinders_from, backwards=clear == "backwards")


def _furniture_piece(b: _Builder, lateral: float, forward: float, colour: RGB) -> None:
    rng = b.rng
    choice = int(rng.integers(5))
    if choice == 0:  # cabinet / shelf
        b.add_box(
            lateral, forward, (rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.45), rng.uniform(0.4, 1.0)), colour
        )
    elif choice == 1:  # sofa: seat + back
        width = rng.uniform(0.8, 1.6)
        b.add_box(lateral, forward, (width, 0.5, 0.25), colour)
        b.add_box(lateral, forward + 0.22, (width, 0.15, 0.55), _jitter(rng, colour, 0.1))
    elif choice == 2:  # table: top + four legs
        width, depth, height = rng.uniform(0.5, 1.0), rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.75)
        b.add_box(lateral, forward, (width, depth, 0.03), colour, base_y=height)
        leg = (0.04, 0.04, height)
        for su in (-1, 1):
            for sv in (-1, 1):
                b.add_box(lateral + su * (width / 2 - 0.04), forward + sv * (depth / 2 - 0.04), leg, colour)
    elif choice == 3:  # cardboard box / crate
        size = (rng.uniform(0.15, 0.45), rng.uniform(0.15, 0.4), rng.uniform(0.1, 0.4))
        b.add_box(lateral, forward, size, colour)
    else:  # bin / pot
        b.add_cylinder(lateral, forward, rng.uniform(0.08, 0.18), rng.uniform(0.2, 0.5), colour)


def _clutter(b: _Builder, dark_share: float) -> None:
    """Background furniture against the wall and things beside the path, mostly not dark."""
    rng = b.rng
    half = b.config.half_path_m

    def colour() -> RGB:
        return _dark_colour(rng) if rng.random() < dark_share else _bright_colour(rng)

    for _ in range(int(rng.integers(0, 3))):
        _furniture(
            b, rng.uniform(-1.6, 1.6), b.wall_forward - rng.uniform(0.3, 0.7), colour(), clear="backwards"
        )
    for _ in range(int(rng.integers(0, 3))):
        side = _side(rng)
        lateral = side * (half + rng.uniform(0.35, 1.2))
        _furniture(b, lateral, rng.uniform(0.4, max(0.5, b.wall_forward - 0.4)), colour())
    if rng.random() < 0.25:  # a bright rug or sheet of paper somewhere on the floor
        b.add_mat(
            rng.uniform(-0.6, 0.6),
            rng.uniform(0.2, 1.5),
            (rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.5)),
            _bright_colour(rng),
        )


def _ahead(placement: Placement, low: float, high: float, rng: Draws) -> float:
    lo, hi = placement.ahead if placement.ahead is not None else (low, high)
    return float(rng.uniform(lo, hi))


# -- the kinds ------------------------------------------------------------------------------------
def _empty(b: _Builder, placement: Placement) -> None:
    _clutter(b, dark_share=0.1)


def _can_in_path(b: _Builder, placement: Placement) -> tuple[float, float]:
    """The can in the path, nearer than the cutoff: its (lateral, forward surface) distance."""
    cfg, gaps, rng = b.config, placement.gaps, b.rng
    lateral = rng.uniform(-1, 1) * (cfg.half_path_m - gaps.lateral)
    forward = _ahead(placement, 0.05, cfg.stop_distance_m - gaps.distance_inside, rng)
    b.add_can(lateral, forward)
    return lateral, forward


def _can_path(b: _Builder, placement: Placement) -> None:
    _can_in_path(b, placement)
    _clutter(b, dark_share=0.1)
    _maybe_hard_negative(b, placement, 0.25)


def _can_far(b: _Builder, placement: Placement) -> None:
    cfg, gaps, rng = b.config, placement.gaps, b.rng
    lateral = rng.uniform(-1, 1) * (cfg.half_path_m - gaps.lateral)
    near = cfg.stop_distance_m + gaps.distance_outside
    far = max(near + 0.1, min(2.5, b.wall_forward - 0.3))
    # half of them just beyond the cutoff: that is where the decision is made
    forward = rng.uniform(near, min(near + 0.35, far)) if rng.random() < 0.5 else rng.uniform(near, far)
    b.add_can(lateral, forward if placement.ahead is None else _ahead(placement, near, far, rng))
    _clutter(b, dark_share=0.1)
    _maybe_hard_negative(b, placement, 0.15)


def _can_side(b: _Builder, placement: Placement) -> None:
    cfg, gaps, rng = b.config, placement.gaps, b.rng
    forward = _ahead(placement, 0.08, 0.7, rng)
    # beside the path but (mostly) inside the picture: the visible half-width grows with distance
    visible = (forward + 0.05) * math.tan(math.radians(cfg.camera_hfov_deg) / 2)
    low = cfg.half_path_m + gaps.lateral
    lateral = rng.uniform(low, max(low + 0.05, min(visible, low + 0.35)))
    b.add_can(_side(rng) * lateral, forward)
    _clutter(b, dark_share=0.1)


def _dark_mat_on_path(b: _Builder, placement: Placement) -> None:
    rng = b.rng
    size = (rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.5))
    forward = _ahead(placement, 0.0, 0.35, rng) + size[1] / 2
    b.add_mat(rng.uniform(-0.08, 0.08), forward, size, _grey(rng, 0.02, 0.12, tint=0.3))


def _shadow_on_path(b: _Builder, placement: Placement) -> None:
    rng = b.rng
    size = (rng.uniform(0.25, 0.8), rng.uniform(0.15, 0.6))
    forward = _ahead(placement, 0.0, 0.4, rng) + size[1] / 2
    b.add_shadow(rng.uniform(-0.1, 0.1), forward, size, darkness=rng.uniform(0.55, 0.85))


def _dark_object_beside(b: _Builder, placement: Placement) -> None:
    rng, cfg = b.rng, b.config
    forward = _ahead(placement, 0.1, 0.8, rng)
    side = _side(rng)
    colour = _dark_colour(rng)
    if rng.random() < 0.5:
        radius = rng.uniform(0.04, 0.12)
        lateral = side * (cfg.half_path_m + placement.gaps.lateral + radius + rng.uniform(0.0, 0.2))
        b.add_cylinder(lateral, forward + radius, radius, rng.uniform(0.08, 0.35), colour)
    else:
        size = (rng.uniform(0.08, 0.3), rng.uniform(0.08, 0.3), rng.uniform(0.05, 0.3))
        lateral = side * (cfg.half_path_m + placement.gaps.lateral + size[0] / 2 + rng.uniform(0.0, 0.2))
        b.add_box(lateral, forward + size[1] / 2, size, colour)


def _dark_background(b: _Builder, placement: Placement) -> None:
    rng = b.rng
    for _ in range(int(rng.integers(1, 3))):
        _furniture(
            b,
            rng.uniform(-0.8, 0.8),
            b.wall_forward - rng.uniform(0.3, 0.6),
            _dark_colour(rng),
            clear="backwards",
        )


def _can_before_dark(b: _Builder, placement: Placement) -> None:
    """A black can against something as dark as itself: the scene behind the closed loop's closest stops
    (session 7, seed 14400 run 1350: P(STOP) 0.00 in front of a dark box until 3 cm from the can)."""
    lateral, forward = _can_in_path(b, placement)
    _clutter(b, dark_share=0.1)
    rng = b.rng
    for _ in range(int(rng.integers(1, 3))):  # 0.3 m or more behind the can's front, before the wall
        behind = min(forward + rng.uniform(0.3, 0.9), b.wall_forward - 0.3)
        _furniture(b, lateral + rng.uniform(-0.25, 0.25), behind, _dark_colour(rng), clear=None)


HARD_NEGATIVES: tuple[Callable[[_Builder, Placement], None], ...] = (
    _dark_mat_on_path,
    _shadow_on_path,
    _dark_object_beside,
    _dark_background,
)


def _maybe_hard_negative(b: _Builder, placement: Placement, probability: float) -> None:
    """Some can scenes get a hard negative too, so that 'a dark mat is in view' never means GO."""
    if b.rng.random() < probability:
        pick = HARD_NEGATIVES[int(b.rng.integers(len(HARD_NEGATIVES)))]
        if pick in (_dark_mat_on_path, _shadow_on_path):
            # lie beside the can rather than on top of it
            pick(b, replace(placement, ahead=(0.0, 0.05)))
        else:
            pick(b, Placement(gaps=placement.gaps))


def _hard_negative(content: Callable[[_Builder, Placement], None]) -> Callable[[_Builder, Placement], None]:
    def sample(b: _Builder, placement: Placement) -> None:
        content(b, placement)
        _clutter(b, dark_share=0.15)

    return sample


@dataclass(frozen=True, slots=True)
class SceneKind:
    name: str
    fill: Callable[[_Builder, Placement], None]
    weight: float
    """Share of this kind in a generated dataset's default mix."""
    label: int
    """The label of a frame at placement (0 GO, 1 STOP)."""
    wall_dark_chance: float = 0.0


SCENE_KINDS: Mapping[str, SceneKind] = {
    k.name: k
    for k in (
        SceneKind("empty", _empty, 0.08, 0),
        SceneKind("can_path", _can_path, 0.42, 1),
        SceneKind("can_far", _can_far, 0.12, 0),
        SceneKind("can_side", _can_side, 0.10, 0),
        SceneKind("dark_mat", _hard_negative(_dark_mat_on_path), 0.08, 0),
        SceneKind("shadow", _hard_negative(_shadow_on_path), 0.07, 0),
        SceneKind("dark_object_side", _hard_negative(_dark_object_beside), 0.07, 0),
        SceneKind("dark_background", _hard_negative(_dark_background), 0.06, 0, wall_dark_chance=0.4),
        # last and weight 0: the default mix, and so every documented evaluation's runs, stay as they were
        SceneKind("can_before_dark", _can_before_dark, 0.0, 1, wall_dark_chance=0.5),
    )
}
"""Scene kinds by name: the registry `sample_scene` draws from."""

HARD_NEGATIVE_KINDS = ("dark_mat", "shadow", "dark_object_side", "dark_background")


def pick_kind(rng: np.random.Generator | Draws, weights: Mapping[str, float] | None = None) -> str:
    """Draw a kind name by the default mix (or by `weights`, kind name → weight)."""
    names, cumulative = _cumulative_weights(None if weights is None else tuple(weights.items()))
    pick = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
    return names[min(pick, len(names) - 1)]


@lru_cache(maxsize=16)
def _cumulative_weights(
    items: tuple[tuple[str, float], ...] | None,
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    table = items if items is not None else tuple((name, kind.weight) for name, kind in SCENE_KINDS.items())
    return tuple(name for name, _ in table), tuple(itertools.accumulate(weight for _, weight in table))


def sample_scene(
    rng: np.random.Generator,
    kind: str | None = None,
    config: WorldConfig | None = None,
    placement: Placement | None = None,
) -> Scene:
    """A random scene of `kind` (None: drawn by the default mix). Same generator state, same scene."""
    config = config or WorldConfig()
    placement = placement or Placement()
    name = kind if kind is not None else pick_kind(rng)
    draws = Draws(rng)
    if name not in SCENE_KINDS:
        raise VisionError(f"scene kind {name!r} is unknown; choose from {sorted(SCENE_KINDS)}")
    spec = SCENE_KINDS[name]
    if placement.ahead is None:
        start = CarPose(float(draws.normal(0, 0.02)), 0.0, float(draws.normal(0, math.radians(2.0))))
        wall_forward, clear_to = float(draws.uniform(1.0, 5.0)), 0.0
    else:
        start = CarPose(0.0, 0.0, 0.0)
        clear_to = config.track_length_m + config.track_clearance_m
        wall_forward = clear_to + float(draws.uniform(0.0, 2.4))
    builder = _Builder(draws, config, start, wall_forward, clear_to)
    spec.fill(builder, placement)
    wall_tint = WALL_COLOURS[int(draws.integers(len(WALL_COLOURS)))]
    if draws.random() < spec.wall_dark_chance:
        wall_tint = _dark_colour(draws)
    wall = WallLook(start.z + wall_forward, int(draws.integers(VARIANTS)), _jitter(draws, wall_tint, 0.1))
    assert builder.cylinders is not None and builder.boxes is not None
    assert builder.mats is not None and builder.shadows is not None
    scene = Scene(
        kind=name,
        start=start,
        camera_height_m=config.camera_height_m * float(draws.uniform(0.95, 1.05)),
        camera_tilt_deg=config.camera_tilt_deg + float(draws.normal(0, 1.0)),
        floor=_floor(draws),
        wall=wall,
        lighting=_lighting(draws),
        can=builder.can,
        cylinders=tuple(builder.cylinders),
        boxes=tuple(builder.boxes),
        mats=tuple(builder.mats),
        shadows=tuple(builder.shadows),
    )
    return apply_domain(config.domain, scene, draws)
