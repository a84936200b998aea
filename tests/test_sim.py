"""The simulated world: determinism, geometry-driven labels, masks, stepping, every scene kind."""

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from vision.errors import VisionError
from vision.labels import GO, STOP
from vision.sim import (
    HARD_NEGATIVE_KINDS,
    SCENE_KINDS,
    CanGeometry,
    CarPose,
    Placement,
    World,
    WorldConfig,
    label_for,
    sample_scene,
)
from vision.sim.scene import Box, Cylinder, Scene

CONFIG = WorldConfig()


def _scene(kind: str, seed: int = 0, placement: Placement | None = None) -> Scene:
    return sample_scene(np.random.default_rng(seed), kind, CONFIG, placement)


def test_same_seed_same_frames_and_different_seed_differs() -> None:
    scene = _scene("can_path", 5)
    a = World(CONFIG, scene, seed=3)
    b = World(CONFIG, scene, seed=3)
    for _ in range(3):
        (ra, ta), (rb, tb) = a.render(), b.render()
        assert ta.mask is not None and tb.mask is not None
        assert np.array_equal(ra, rb) and np.array_equal(ta.mask, tb.mask)
        a.step(0.2, 0.1)
        b.step(0.2, 0.1)
    assert not np.array_equal(
        World(CONFIG, scene, seed=4).render()[0], World(CONFIG, scene, seed=3).render()[0]
    )
    again = _scene("can_path", 5)
    assert again == scene


@pytest.mark.parametrize("kind", sorted(SCENE_KINDS))
def test_every_kind_renders_its_intended_label(kind: str) -> None:
    for seed in range(4):
        scene = _scene(kind, seed)
        rgb, truth = World(CONFIG, scene, seed=seed).render()
        assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8
        assert truth.scene == kind
        assert truth.label == SCENE_KINDS[kind].label, (kind, seed, truth.distance_m, truth.lateral_m)
        assert truth.mask is not None and truth.mask.shape == (224, 224) and truth.mask.dtype == bool
        if kind.startswith("can_"):
            assert truth.distance_m is not None and truth.lateral_m is not None
        if kind in HARD_NEGATIVE_KINDS or kind == "empty":
            assert scene.can is None and truth.distance_m is None and not truth.mask.any()


def test_can_mask_covers_the_dark_can() -> None:
    for seed in range(5):
        rgb, truth = World(CONFIG, _scene("can_path", seed), seed=seed).render()
        mask = truth.mask
        assert mask.sum() > 400, "a can nearer than the cutoff covers a good part of the frame"
        grey = rgb.mean(axis=2)
        assert np.median(grey[mask]) < np.median(grey[~mask])


def test_label_follows_geometry_exactly() -> None:
    half, cutoff = CONFIG.half_path_m, CONFIG.stop_distance_m
    assert label_for(CONFIG, None) == GO
    assert label_for(CONFIG, CanGeometry(cutoff - 1e-6, half - 1e-6)) == STOP
    assert label_for(CONFIG, CanGeometry(cutoff + 1e-3, 0.0)) == GO  # too far
    assert label_for(CONFIG, CanGeometry(0.1, -(half + 1e-3))) == GO  # beside the path
    assert label_for(CONFIG, CanGeometry(0.0, 0.0)) == STOP  # touching
    assert label_for(CONFIG, CanGeometry(-0.2, 0.0), radius=0.04) == GO  # already passed
    near = WorldConfig(stop_distance_m=0.2)
    assert label_for(near, CanGeometry(0.3, 0.0)) == GO


def test_pose_frames_round_trip() -> None:
    pose = CarPose(0.3, -1.0, math.radians(20))
    x, z = pose.to_world(0.1, 0.5)
    lateral, forward = pose.to_car(x, z)
    assert lateral == pytest.approx(0.1) and forward == pytest.approx(0.5)
    moved = pose.advanced(1.0)
    assert moved.to_car(pose.x, pose.z) == pytest.approx((0.0, -1.0))


def test_driving_at_a_can_collides_and_the_can_grows() -> None:
    scene = _scene("can_path", 2, Placement(ahead=(1.0, 1.0)))
    world = World(CONFIG, scene, seed=0)
    assert world.can_distance() == pytest.approx(1.0, abs=1e-9)
    areas, labels = [], []
    while not world.collided():
        _, truth = world.render()
        areas.append(int(truth.mask.sum()))
        labels.append(truth.label)
        world.step(10.0, 0.1)  # clamped to max speed
        assert len(areas) < 200
    assert world.can_distance() == pytest.approx(0.0, abs=1e-9)
    assert world.odometer_m == pytest.approx(1.0)
    # it speeds up at accel_mps2 from rest: v²/(2a) of the distance is covered at half speed on average
    top, accel = CONFIG.max_speed_mps, CONFIG.accel_mps2
    assert len(areas) == math.ceil((1.0 + top**2 / (2 * accel)) / (top * 0.1))
    assert areas[-1] > 4 * areas[0] > 0
    assert labels[0] == GO and labels[-1] == STOP
    assert world.impact_speed_mps == pytest.approx(top)


def test_the_speed_at_contact_is_what_braking_left() -> None:
    """Braking 5 cm before the can from 0.5 m/s at 1.5 m/s²: v² = 0.25 - 2 × 1.5 × 0.05 at contact."""
    world = World(CONFIG, _scene("can_path", 2, Placement(ahead=(1.0, 1.0))), seed=0)
    world.step(CONFIG.max_speed_mps, 1.0)  # 0.5 m/s after 0.125 m, then 0.375 m at it
    world.step(CONFIG.max_speed_mps, (world.can_distance() - 0.05) / CONFIG.max_speed_mps)
    assert world.can_distance() == pytest.approx(0.05) and world.speed_mps == pytest.approx(0.5)
    assert world.impact_speed_mps is None
    world.step(0.0, 1.0)
    assert world.collided()
    assert world.impact_speed_mps == pytest.approx(math.sqrt(0.25 - 2 * CONFIG.brake_mps2 * 0.05))


def test_can_beside_the_path_is_passed_and_the_end_is_reached() -> None:
    scene = _scene("can_side", 1, Placement(ahead=(1.0, 1.2)))
    world = World(CONFIG, scene, seed=0)
    for _ in range(100):
        world.step(CONFIG.max_speed_mps, 0.1)
        assert world.truth().label == GO
    assert world.reached_end() and not world.collided()


def test_step_rejects_bad_values_and_never_reverses() -> None:
    world = World(CONFIG, _scene("empty"), seed=0)
    world.step(-1.0, 1.0)
    assert world.odometer_m == 0.0 and world.time_s == 1.0
    with pytest.raises(ValueError, match="dt"):
        world.step(0.1, -0.1)
    with pytest.raises(ValueError):
        world.step(float("nan"), 0.1)


def test_frame_wraps_render() -> None:
    world = World(CONFIG, _scene("can_far"), seed=0)
    world.step(0.1, 0.5)
    frame = world.frame()
    assert frame.seq == 0 and frame.t_capture == 0.5 and frame.truth is not None
    assert world.frame().seq == 1


def test_bad_kind_and_bad_config_are_clear_errors() -> None:
    with pytest.raises(VisionError, match="unknown"):
        _scene("purple_elephant")
    with pytest.raises(VisionError, match="stop_distance_m"):
        WorldConfig(stop_distance_m=-1.0)
    with pytest.raises(VisionError, match="camera_hfov_deg"):
        WorldConfig(camera_hfov_deg=170.0)


def test_other_image_sizes_render() -> None:
    config = WorldConfig(image_size=96, jpeg_artifacts=False)
    rgb, truth = World(config, sample_scene(np.random.default_rng(0), "can_path", config), 0).render()
    assert rgb.shape == (96, 96, 3) and truth.mask.shape == (96, 96) and truth.mask.any()


def test_sim_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np; from vision.sim import World, WorldConfig, sample_scene;"
        "c = WorldConfig(); World(c, sample_scene(np.random.default_rng(0), None, c)).render();"
        "assert 'torch' not in sys.modules and 'shap' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_braking_takes_speed_squared_over_twice_the_deceleration() -> None:
    config = WorldConfig(brake_mps2=1.5, accel_mps2=1.0)
    world = World(config, _scene("empty", 3, Placement(ahead=(1.0, 1.0))), seed=0)
    for _ in range(100):  # reach 0.25 m/s
        world.step(0.25, 0.01)
    assert world.speed_mps == pytest.approx(0.25)
    start = world.odometer_m
    steps = 0
    while world.speed_mps > 0:
        world.step(0.0, 1 / 30)  # STOP
        steps += 1
    assert world.odometer_m - start == pytest.approx(0.25**2 / (2 * 1.5), rel=1e-6)
    assert steps == math.ceil(0.25 / 1.5 * 30)


def test_the_hard_positive_kind_is_never_drawn_by_the_default_mix() -> None:
    """`can_before_dark` has weight 0 and comes last: the default mix draws exactly the kinds it drew
    before, so documented evaluations (`car sim eval --seed S`) keep their runs."""
    from vision.sim import pick_kind

    assert list(SCENE_KINDS)[-1] == "can_before_dark" and SCENE_KINDS["can_before_dark"].weight == 0.0
    before = {name: kind.weight for name, kind in SCENE_KINDS.items() if name != "can_before_dark"}
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [pick_kind(a) for _ in range(2000)] == [pick_kind(b, before) for _ in range(2000)]


def test_obstacle_ahead_measures_furniture_and_the_wall_across_the_car_width() -> None:
    empty = replace(_scene("empty", 3), boxes=(), start=CarPose())
    wall = empty.wall.z
    assert World(CONFIG, empty).obstacle_ahead() == pytest.approx(wall)
    grey = (0.5, 0.5, 0.5)
    half = CONFIG.car_width_m / 2
    ahead = Box(0.0, 1.2, 0.4, 0.2, 0.5, grey)  # its near face 1.1 m ahead
    beside = Box(half + 0.25, 0.5, 0.4, 0.2, 0.5, grey)  # its near edge 0.05 m right of the car's side
    table_top = Box(0.0, 0.4, 0.8, 0.6, 0.03, grey, base_y=0.7)  # above the car
    world = World(CONFIG, replace(empty, boxes=(beside, table_top, ahead)))
    assert world.obstacle_ahead() == pytest.approx(1.1)
    # a box turned 45°, a corner pointing at the car: that corner is the nearest point
    diamond = Box(0.0, 1.0, 0.2, 0.2, 0.5, grey, yaw=math.pi / 4)
    corner = 1.0 - 0.1 * math.sqrt(2)
    assert World(CONFIG, replace(empty, boxes=(diamond,))).obstacle_ahead() == pytest.approx(corner)
    off_centre = Box(half + 0.1 * math.sqrt(2) - 0.02, 1.0, 0.2, 0.2, 0.5, grey, yaw=math.pi / 4)
    # the same box moved right until only its side corner reaches 0.02 m into the car's width: the nearest
    # point within the width is where its front edge crosses the car's side, 0.02 m before that corner
    assert World(CONFIG, replace(empty, boxes=(off_centre,))).obstacle_ahead() == pytest.approx(0.98)
    # a bin (not the can) counts too: one straddling the car's side begins where its rim crosses that side
    bin_ = Cylinder(half + 0.06, 0.8, 0.1, 0.4, grey)
    assert World(CONFIG, replace(empty, cylinders=(bin_,))).obstacle_ahead() == pytest.approx(0.8 - 0.08)
    aside = Cylinder(half + 0.11, 0.8, 0.1, 0.4, grey)
    assert World(CONFIG, replace(empty, cylinders=(aside,))).obstacle_ahead() == pytest.approx(wall)
    # driving into a box (no collision is modelled with furniture) reads 0; past it, the wall again
    world = World(CONFIG, replace(empty, boxes=(ahead,)))
    world.step(0.2, 6.0)
    assert world.odometer_m > 1.1 and world.obstacle_ahead() == 0.0
    world.step(0.2, 2.0)
    assert world.obstacle_ahead() == pytest.approx(wall - world.odometer_m)


DRIVE = Placement(ahead=(1.0, 2.5))


@pytest.mark.parametrize("kind", sorted(SCENE_KINDS))
def test_a_drive_keeps_furniture_off_its_track(kind: str) -> None:
    """Nothing but the can (and, in `can_before_dark`, what stands behind it on purpose) stands across the
    car's width before the track's end plus `track_clearance_m`: a stop there is false, not a stop for a
    cabinet the simulated car would have driven through."""
    clear = CONFIG.track_length_m + CONFIG.track_clearance_m
    for seed in range(60):
        world = World(CONFIG, _scene(kind, seed, DRIVE))
        ahead = world.obstacle_ahead()
        if kind == "can_before_dark":
            can = world.can_distance()
            assert ahead is not None and can is not None and ahead > can, seed
        else:
            assert ahead is not None and ahead >= clear - 1e-9, (seed, ahead)


def test_keeping_the_track_clear_moves_furniture_and_draws_nothing_more() -> None:
    """The same seed with and without clearance: the same pieces in the same colours and sizes (so the
    rest of the scene is drawn alike), some of them moved, the wall `track_clearance_m` farther."""
    moved = 0
    for seed in range(40):
        cleared = _scene("dark_background", seed, DRIVE)
        loose = sample_scene(
            np.random.default_rng(seed), "dark_background", replace(CONFIG, track_clearance_m=0.0), DRIVE
        )
        assert cleared.wall.z == pytest.approx(loose.wall.z + CONFIG.track_clearance_m)
        assert cleared.lighting == loose.lighting and cleared.floor == loose.floor
        pairs = list(zip(cleared.boxes, loose.boxes, strict=True))
        assert all(
            (a.width, a.depth, a.colour, a.yaw) == (b.width, b.depth, b.colour, b.yaw) for a, b in pairs
        )
        moved += any((a.x, a.z) != (b.x, b.z) for a, b in pairs)
    assert moved > 0


def test_single_frames_may_still_show_furniture_ahead() -> None:
    """Clearance is for drives only: generated frames (and so every training set) are drawn as before."""
    ahead = [World(CONFIG, _scene("dark_background", seed)).obstacle_ahead() for seed in range(20)]
    assert any(a is not None and a < 3.0 for a in ahead)
