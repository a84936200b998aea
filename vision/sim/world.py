"""A simulated world the car drives in: a scene, the car's pose, speed commands, frames with ground truth.

Same config, scene and seed: same frames (per-frame randomness — camera shake, sensor noise — is drawn
from a generator seeded by (seed, frame number)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vision.frame import Frame, GroundTruth
from vision.labels import GO, STOP
from vision.sim.config import WorldConfig
from vision.sim.render import renderer_for
from vision.sim.scene import Box, CarPose, Cylinder, Scene


@dataclass(frozen=True, slots=True)
class CanGeometry:
    """Where the can is as seen from the car: forward distance from the car's front to the can's near
    surface (metres), and the lateral offset of its centre from the path's centre line (> 0 = right)."""

    distance_m: float
    lateral_m: float


def can_geometry(pose: CarPose, can: Cylinder | None) -> CanGeometry | None:
    if can is None:
        return None
    lateral, forward = pose.to_car(can.x, can.z)
    return CanGeometry(forward - can.radius, lateral)


def label_for(config: WorldConfig, geometry: CanGeometry | None, radius: float = 0.0) -> int:
    """STOP when the can is in the path (|lateral| ≤ half the car's width + margin) and not farther than
    the cutoff; a can already behind the car's front (its centre behind it) does not count."""
    if geometry is None:
        return GO
    in_path = abs(geometry.lateral_m) <= config.half_path_m
    near = -radius <= geometry.distance_m <= config.stop_distance_m
    return STOP if in_path and near else GO


def ground_truth(config: WorldConfig, scene: Scene, pose: CarPose, mask: np.ndarray | None) -> GroundTruth:
    geometry = can_geometry(pose, scene.can)
    radius = scene.can.radius if scene.can is not None else 0.0
    return GroundTruth(
        label=label_for(config, geometry, radius),
        distance_m=None if geometry is None else geometry.distance_m,
        lateral_m=None if geometry is None else geometry.lateral_m,
        mask=mask,
        scene=scene.kind,
    )


def travel_and_speed(v0: float, target: float, dt: float, config: WorldConfig) -> tuple[float, float]:
    """Distance covered in `dt` and the speed at its end, the speed ramping linearly from `v0` towards
    `target` at the config's acceleration or braking rate, then holding it (exact for that motion)."""
    rate = config.accel_mps2 if target >= v0 else config.brake_mps2
    t_reach = abs(target - v0) / rate
    if t_reach > dt * (1 + 1e-9):  # (not reached within dt, rounding aside)
        v1 = v0 + math.copysign(rate * dt, target - v0)
        return (v0 + v1) / 2 * dt, v1
    return (v0 + target) / 2 * t_reach + target * (dt - t_reach), target


def speed_after(v0: float, target: float, distance: float, config: WorldConfig) -> float:
    """The speed once `distance` is covered in the motion `travel_and_speed` describes (v² = v0² ± 2·a·d
    while ramping, then `target`)."""
    rate = config.accel_mps2 if target >= v0 else config.brake_mps2
    ramp = abs(target**2 - v0**2) / (2 * rate)  # the distance the ramp takes
    if distance >= ramp:
        return target
    return math.sqrt(max(v0**2 + math.copysign(2 * rate * distance, target - v0), 0.0))


class World:
    """The car in a scene. `step(speed, dt)` moves it; `render()` is what its camera sees now."""

    def __init__(self, config: WorldConfig, scene: Scene, seed: int = 0) -> None:
        self.config = config
        self.scene = scene
        self.seed = int(seed)
        self.pose = scene.start
        self.time_s = 0.0
        self.frame_index = 0
        self.odometer_m = 0.0
        self.speed_mps = 0.0
        """The car's actual speed: it follows the commanded speed at `accel_mps2` / `brake_mps2`."""
        self.impact_speed_mps: float | None = None
        """The car's speed when its front touched the can (None before a collision)."""
        self._renderer = renderer_for(config)

    def step(self, speed_mps: float, dt: float) -> None:
        """Command `speed_mps` (clamped to 0..max speed) for `dt` seconds; stop at the can.

        The car's speed moves towards the command at `config.accel_mps2` (faster) or `config.brake_mps2`
        (slower), so a STOP still travels v²/(2·brake) after it arrives."""
        if not (math.isfinite(speed_mps) and math.isfinite(dt)) or dt < 0:
            raise ValueError(f"World.step(speed={speed_mps!r}, dt={dt!r}): need finite speed and dt >= 0")
        target = min(max(speed_mps, 0.0), self.config.max_speed_mps)
        v0 = self.speed_mps
        travel, self.speed_mps = travel_and_speed(v0, target, dt, self.config)
        geometry = can_geometry(self.pose, self.scene.can)
        if geometry is not None and self._blocks(geometry) and geometry.distance_m - travel <= 0:
            travel = max(geometry.distance_m, 0.0)
            if self.impact_speed_mps is None:
                self.impact_speed_mps = speed_after(v0, target, travel, self.config)
            self.speed_mps = 0.0
        self.pose = self.pose.advanced(travel)
        self.odometer_m += travel
        self.time_s += dt

    def _blocks(self, geometry: CanGeometry) -> bool:
        """Would the car's body touch the can if it drove on (can beside the car's width misses it)?"""
        assert self.scene.can is not None
        reach = self.config.car_width_m / 2 + self.scene.can.radius
        return abs(geometry.lateral_m) < reach and geometry.distance_m > -self.scene.can.radius

    def render(self) -> tuple[np.ndarray, GroundTruth]:
        """The camera's RGB uint8 frame (S×S×3) and its ground truth (label, distance, lateral, mask)."""
        rng = np.random.default_rng([self.seed, self.frame_index])
        self.frame_index += 1
        jitter = self.config.camera_jitter_deg
        pitch, roll = (float(v) for v in rng.normal(0.0, jitter, size=2)) if jitter > 0 else (0.0, 0.0)
        result = self._renderer.render(self.scene, self.pose, rng, pitch, roll)
        return result.rgb, ground_truth(self.config, self.scene, self.pose, result.can_mask)

    def frame(self, source: str = "sim") -> Frame:
        """`render()` wrapped as a Frame (seq = frame number, capture time = simulated time)."""
        seq = self.frame_index
        rgb, truth = self.render()
        return Frame(seq=seq, t_capture=self.time_s, rgb=rgb, source=source, truth=truth)

    def can_distance(self) -> float | None:
        """Forward distance from the car's front to the can's near surface, or None without a can."""
        geometry = can_geometry(self.pose, self.scene.can)
        return None if geometry is None else geometry.distance_m

    def obstacle_ahead(self) -> float | None:
        """Forward distance from the car's front to the nearest furniture or wall across the car's width, or
        None when nothing stands in front of it.

        Only the can stops the simulated car (it drives through furniture: no other collision is modelled);
        this says whether a stop that the evaluation counts as false had something solid in front of it. A
        drive's scene keeps its track clear (`WorldConfig.track_clearance_m`), so there it reads at least the
        track's rest plus the clearance, but for what stands behind the can on purpose."""
        half = self.config.car_width_m / 2
        nearest = [f for box in self.scene.boxes if (f := self._box_ahead(box, half)) is not None]
        nearest += [f for bin_ in self.scene.cylinders if (f := self._cylinder_ahead(bin_, half)) is not None]
        heading = math.cos(self.pose.yaw)
        if heading > 0 and self.scene.wall.z > self.pose.z:
            nearest.append((self.scene.wall.z - self.pose.z) / heading)  # along the heading to its line
        return min(nearest) if nearest else None

    def _cylinder_ahead(self, cylinder: Cylinder, half: float) -> float | None:
        """How far ahead a bin or pot (not the can) begins within the car's width, or None."""
        lateral, forward = self.pose.to_car(cylinder.x, cylinder.z)
        gap = max(abs(lateral) - half, 0.0)  # from its axis to the nearest point of the car's width
        if gap >= cylinder.radius or forward + cylinder.radius <= 0:
            return None
        return max(forward - math.sqrt(cylinder.radius**2 - gap**2), 0.0)

    def _box_ahead(self, box: Box, half: float) -> float | None:
        """How far ahead the part of a box's footprint within the car's width begins (0 when the car's front
        is inside it), or None when none of it is ahead within that width or it stands above the car."""
        if box.base_y >= self.scene.camera_height_m:
            return None  # a table top: the car passes under it
        corners = [self.pose.to_car(x, z) for x, z in box.footprint()]
        # the footprint clipped to the strip |lateral| <= half: its corners inside the strip and its edges'
        # crossings of the strip's two sides hold the clipped polygon's nearest point
        ahead = [f for lat, f in corners if abs(lat) <= half]
        for (la, fa), (lb, fb) in zip(corners, corners[1:] + corners[:1], strict=True):
            for side in (-half, half):
                if (la - side) * (lb - side) < 0:
                    ahead.append(fa + (fb - fa) * (side - la) / (lb - la))
        if not ahead or max(ahead) <= 0:
            return None
        return max(min(ahead), 0.0)

    def truth(self) -> GroundTruth:
        """The ground truth of the current pose, without rendering (no mask)."""
        return ground_truth(self.config, self.scene, self.pose, None)

    def collided(self) -> bool:
        """Has the car's front reached the can (it cannot drive through it)?"""
        return self.impact_speed_mps is not None

    def reached_end(self) -> bool:
        """Has the car driven the track's length?"""
        return self.odometer_m >= self.config.track_length_m
