"""The simulated world as `car drive` and `car sim eval` use it: scenes chosen from the config.

`make_world` builds one `vision.sim.World` for a seed and a scene kind (the can placed 1.0–2.5 m ahead by
default, or at `start_distance_m`). `EpisodicWorld` strings worlds together for a long drive: when the car
reaches the end of the track, touches the can, or has stood still for `episode_pause_s`, the next scene
(seed + 1) begins. Frames keep their sequence numbers across scenes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from car.config import SimConfig
from car.errors import CarError
from vision.frame import GroundTruth
from vision.sim import SCENE_KINDS, Placement, World, WorldConfig, pick_kind, sample_scene

DRIVE_PLACEMENT = Placement(ahead=(1.0, 2.5))


def scene_kind(rng: np.random.Generator, name: str) -> str:
    if name == "random":
        return pick_kind(rng)
    if name not in SCENE_KINDS:
        raise CarError(f"sim.scene={name!r}: choose 'random' or one of {', '.join(sorted(SCENE_KINDS))}")
    return name


def make_world(
    seed: int,
    kind: str,
    *,
    config: WorldConfig | None = None,
    start_distance_m: float = 0.0,
) -> World:
    """One world: same seed and kind, same scene and frames."""
    world_config = config or WorldConfig()
    rng = np.random.default_rng([seed, 7])
    chosen = scene_kind(rng, kind)
    placement = (
        DRIVE_PLACEMENT if start_distance_m <= 0 else Placement(ahead=(start_distance_m, start_distance_m))
    )
    scene = sample_scene(rng, chosen, world_config, placement)
    return World(world_config, scene, seed)


class EpisodicWorld:
    """One scene after another (see the module docstring). Has `step` and `render` like a `World`."""

    def __init__(
        self,
        sim: SimConfig,
        motor_fraction: Callable[[], float] | None = None,
        config: WorldConfig | None = None,
    ) -> None:
        self.sim = sim
        self.config = config or WorldConfig(domain=sim.domain)
        self.max_speed_mps = self.config.max_speed_mps
        self.episode = 0
        self.world = self._new_world()
        self._still_s = 0.0
        self.collisions = 0

    @classmethod
    def from_config(cls, sim: SimConfig, motor_fraction: Callable[[], float] | None = None) -> EpisodicWorld:
        return cls(sim, motor_fraction)

    def _new_world(self) -> World:
        return make_world(
            self.sim.seed + self.episode,
            self.sim.scene,
            config=self.config,
            start_distance_m=self.sim.start_distance_m,
        )

    def step(self, speed_mps: float, dt: float) -> None:
        self.world.step(speed_mps, dt)
        self._still_s = self._still_s + dt if speed_mps <= 0 else 0.0
        if self.world.collided():
            self.collisions += 1
        if self.world.collided() or self.world.reached_end() or self._still_s >= self.sim.episode_pause_s:
            self.episode += 1
            self.world = self._new_world()
            self._still_s = 0.0

    def render(self) -> tuple[np.ndarray, GroundTruth]:
        return self.world.render()
