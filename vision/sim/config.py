"""The simulated car and camera: one frozen, validated config shared by the world and its renderer."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from vision.errors import VisionError
from vision.sim.domains import DOMAINS


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Geometry of the simulated car, its camera and its track (metres, degrees, seconds).

    Defaults describe a small RC car (JetBot class): a Raspberry Pi camera v2 (62.2° horizontal field of
    view) 12 cm above the floor at the car's front, tilted 12° down; the car is 18 cm wide. A can counts
    as in the path when its centre is within half the car's width plus `path_margin_m` of the path's
    centre line, and the frame is STOP when such a can is nearer than `stop_distance_m` (default 0.35 m,
    measured from the car's front to the can's near surface).
    """

    image_size: int = 224
    camera_height_m: float = 0.12
    camera_tilt_deg: float = 12.0
    camera_hfov_deg: float = 62.2
    camera_jitter_deg: float = 0.6
    """Standard deviation of the per-frame pitch/roll shake while driving (World.render)."""
    car_width_m: float = 0.18
    path_margin_m: float = 0.03
    stop_distance_m: float = 0.35
    max_speed_mps: float = 0.5
    accel_mps2: float = 1.0
    """How fast the car gains speed (a small geared DC-motor car reaches 0.5 m/s in about half a second)."""
    brake_mps2: float = 1.5
    """How fast it loses speed when the motors are cut or slowed (gearbox friction and the H-bridge's
    braking: from 0.25 m/s it stops in 2.1 cm and 0.17 s). The car does not stop the instant STOP arrives."""
    track_length_m: float = 3.0
    track_clearance_m: float = 0.9
    """A drive's scene keeps the car's path (its width plus `path_margin_m`) free of everything but the can,
    and what stands behind the can, from the start to this far past the track's end: the simulated car
    drives through furniture (no collision with it is modelled), so a cabinet on the track would leave a
    run no right answer, stopping in front of it counted false and driving on a crash in a real room."""
    jpeg_artifacts: bool = True
    """Let scenes compress their frames with a random JPEG quality (as a cheap camera stream would)."""
    sensor_noise: bool = True
    domain: str = "default"
    """The world's look: a name in `vision.sim.domains.DOMAINS` (`shifted`: floors, colours and light the
    training world never had)."""

    def __post_init__(self) -> None:
        positive = (
            "camera_height_m",
            "car_width_m",
            "stop_distance_m",
            "max_speed_mps",
            "accel_mps2",
            "brake_mps2",
            "track_length_m",
        )
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise VisionError(f"WorldConfig.{name}={value!r}: must be a finite number > 0")
        checks = (
            ("image_size", 32 <= self.image_size <= 1024, "an integer in 32..1024"),
            ("camera_tilt_deg", -30.0 <= self.camera_tilt_deg <= 60.0, "in -30..60 degrees (down > 0)"),
            ("camera_hfov_deg", 20.0 <= self.camera_hfov_deg <= 140.0, "in 20..140 degrees"),
            ("camera_jitter_deg", 0.0 <= self.camera_jitter_deg <= 10.0, "in 0..10 degrees"),
            ("path_margin_m", 0.0 <= self.path_margin_m <= 1.0, "in 0..1 m"),
            ("track_clearance_m", 0.0 <= self.track_clearance_m <= 10.0, "in 0..10 m"),
        )
        if self.domain not in DOMAINS:
            raise VisionError(f"WorldConfig.domain={self.domain!r}: choose from {', '.join(DOMAINS)}")
        for name, ok, allowed in checks:
            if not ok:
                raise VisionError(f"WorldConfig.{name}={getattr(self, name)!r}: must be {allowed}")

    @property
    def half_path_m(self) -> float:
        """A can whose centre is this close to the path's centre line is in the car's path."""
        return self.car_width_m / 2 + self.path_margin_m

    @property
    def focal_px(self) -> float:
        return (self.image_size / 2) / math.tan(math.radians(self.camera_hfov_deg) / 2)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
