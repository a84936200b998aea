"""The simulated world: a procedural forward camera of a small robot car, a black tin can, hard negatives.

Public API: `WorldConfig`, `Scene` (+ its parts), `sample_scene(rng, kind, config, placement)`,
`SCENE_KINDS` (the registry of kinds), `World(config, scene, seed)`. Torch-free: the car's drive path may
import it.
"""

from vision.sim.config import WorldConfig
from vision.sim.kinds import HARD_NEGATIVE_KINDS, SCENE_KINDS, DatasetGaps, Placement, pick_kind, sample_scene
from vision.sim.scene import Box, CarPose, Cylinder, FloorLook, Lighting, Mat, Scene, Shadow, WallLook
from vision.sim.world import CanGeometry, World, can_geometry, ground_truth, label_for

__all__ = [
    "HARD_NEGATIVE_KINDS",
    "SCENE_KINDS",
    "Box",
    "CanGeometry",
    "CarPose",
    "Cylinder",
    "DatasetGaps",
    "FloorLook",
    "Lighting",
    "Mat",
    "Placement",
    "Scene",
    "Shadow",
    "WallLook",
    "World",
    "WorldConfig",
    "can_geometry",
    "ground_truth",
    "label_for",
    "pick_kind",
    "sample_scene",
]
