"""What a simulated scene holds: plain frozen records, placed in world coordinates.

World frame: x to the right of the track, y up, z forward along the track; the floor is y = 0. The car
starts at `Scene.start` and drives along +z. Colours are linear RGB in 0..1 (before exposure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RGB = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class CarPose:
    """Where the car's front centre is on the floor, and its heading (radians, 0 = +z, > 0 = right)."""

    x: float = 0.0
    z: float = 0.0
    yaw: float = 0.0

    def to_car(self, x: float, z: float) -> tuple[float, float]:
        """World floor point → (lateral to the right, forward) in the car's frame."""
        dx, dz = x - self.x, z - self.z
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return dx * c - dz * s, dx * s + dz * c

    def to_world(self, lateral: float, forward: float) -> tuple[float, float]:
        """(lateral, forward) in the car's frame → world floor point (x, z)."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.x + lateral * c + forward * s, self.z - lateral * s + forward * c

    def advanced(self, distance: float) -> CarPose:
        return CarPose(
            self.x + distance * math.sin(self.yaw), self.z + distance * math.cos(self.yaw), self.yaw
        )


@dataclass(frozen=True, slots=True)
class Cylinder:
    """An upright cylinder standing on the floor: the tin can, or a bin, bottle or pot."""

    x: float
    z: float
    radius: float
    height: float
    colour: RGB
    specular: float = 0.0
    shininess: float = 20.0


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned (in its own yaw) box: furniture, cardboard boxes, table tops and legs."""

    x: float
    z: float
    width: float
    depth: float
    height: float
    colour: RGB
    yaw: float = 0.0
    base_y: float = 0.0

    def footprint(self) -> tuple[tuple[float, float], ...]:
        """Its four corners on the floor (x, z), in order around it."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        hw, hd = self.width / 2, self.depth / 2
        return tuple(
            (self.x + u * c + v * s, self.z - u * s + v * c)
            for u, v in ((-hw, -hd), (hw, -hd), (hw, hd), (-hw, hd))
        )


@dataclass(frozen=True, slots=True)
class Mat:
    """A flat rectangle lying on the floor (rug, mat, paper, tape)."""

    x: float
    z: float
    width: float
    depth: float
    colour: RGB
    yaw: float = 0.0


@dataclass(frozen=True, slots=True)
class Shadow:
    """A soft darkening of the floor (cast by something outside the picture, or by an object)."""

    x: float
    z: float
    width: float
    depth: float
    darkness: float
    yaw: float = 0.0
    softness: float = 0.03
    elliptic: bool = False


@dataclass(frozen=True, slots=True)
class FloorLook:
    texture: str
    variant: int
    tint: RGB
    metres_per_tile: float
    rotation: float
    offset: tuple[float, float]


@dataclass(frozen=True, slots=True)
class WallLook:
    """The background wall across the track at world z = `z`."""

    z: float
    variant: int
    tint: RGB


@dataclass(frozen=True, slots=True)
class Lighting:
    exposure: float
    ambient: float
    light_azimuth: float
    light_elevation: float
    shadow_strength: float
    ramp: tuple[float, float]
    vignette: float
    white_balance: RGB
    noise_sigma: float
    blur_sigma: float
    """Lens softness; above 0.6 the frame gets a 3×3 box blur."""
    jpeg_quality: int | None


@dataclass(frozen=True, slots=True)
class Scene:
    """Everything placed in one world; `kind` is the tag of the sampler that made it."""

    kind: str
    start: CarPose
    camera_height_m: float
    camera_tilt_deg: float
    floor: FloorLook
    wall: WallLook
    lighting: Lighting
    can: Cylinder | None = None
    cylinders: tuple[Cylinder, ...] = ()
    boxes: tuple[Box, ...] = ()
    mats: tuple[Mat, ...] = ()
    shadows: tuple[Shadow, ...] = ()
