"""The procedural renderer: what a pinhole camera on the car sees of a `Scene` from a `CarPose`.

Speed comes from the pinhole geometry: a pixel's viewing ray is `right·a(u) + down·b(v) + forward`, so
each world component of every ray is an outer sum of a per-column and a per-row vector, and the floor and
wall hit points follow from a handful of whole-image numpy operations. Textures are fetched with one
`np.take` from a flat atlas (nearest texel, from a blur level chosen by distance, so nothing aliases).
Objects are drawn far to near: upright cylinders (the can) by exact per-pixel ray intersection inside
their bounding box, boxes as flat-shaded polygons. The can's visible pixels are the ground-truth mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vision.imageio import decode_rgb, encode_jpeg
from vision.sim.config import WorldConfig
from vision.sim.scene import Box, CarPose, Cylinder, Lighting, Mat, Scene, Shadow
from vision.sim.textures import (
    FLOOR_BLUR,
    FLOOR_SIZE,
    LUMINANCE_SCALE,
    WALL_H,
    WALL_PX_PER_M,
    WALL_W,
    noise_bank,
    texture_atlas,
)

NEAR_M = 0.01
SHADOW_RANGE_M = 2.5
THIN_BOX_M = 0.05
"""Boxes no wider or deeper than this (table legs) are drawn as their one camera-facing side."""
"""Objects farther than this from the camera cast no shadow (a few pixels at most)."""


@dataclass(frozen=True, slots=True)
class CameraPose:
    """Camera centre and its right/down/forward unit vectors in world coordinates."""

    centre: np.ndarray
    right: np.ndarray
    down: np.ndarray
    forward: np.ndarray
    to_camera_matrix: np.ndarray
    floats: tuple[float, ...]
    """centre, right, down, forward as 12 Python floats (for per-object maths without numpy overhead)."""

    @classmethod
    def from_car(
        cls,
        pose: CarPose,
        height: float,
        tilt_deg: float,
        pitch_jitter_deg: float = 0.0,
        roll_deg: float = 0.0,
    ) -> CameraPose:
        tilt = math.radians(tilt_deg + pitch_jitter_deg)
        roll = math.radians(roll_deg)
        ct, st, cr, sr = math.cos(tilt), math.sin(tilt), math.cos(roll), math.sin(roll)
        cy, sy = math.cos(pose.yaw), math.sin(pose.yaw)
        # car axes: forward (sy, 0, cy), right (cy, 0, -sy), up (0, 1, 0); tilt pitches forward down
        forward = (ct * sy, -st, ct * cy)
        down = (-st * sy, -ct, -st * cy)
        right = (cr * cy + sr * down[0], sr * down[1], -cr * sy + sr * down[2])
        down_rolled = (-sr * cy + cr * down[0], cr * down[1], sr * sy + cr * down[2])
        centre = (pose.x, height, pose.z)
        floats = (*centre, *right, *down_rolled, *forward)
        matrix = np.array([right, down_rolled, forward]).T
        return cls(
            np.array(centre), np.array(right), np.array(down_rolled), np.array(forward), matrix, floats
        )

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N×3) → camera coordinates (N×3: right, down, forward)."""
        return (points - self.centre) @ self.to_camera_matrix

    def in_view(self, x: float, z: float, reach: float, tan_half_fov: float) -> bool:
        """Could anything within `reach` of floor point (x, z) (up to 1 m tall) be in the picture?"""
        rx, rz = x - float(self.centre[0]), z - float(self.centre[2])
        fx, fz = float(self.forward[0]), float(self.forward[2])
        norm = math.hypot(fx, fz) or 1.0
        ahead = (rx * fx + rz * fz) / norm
        if ahead < -reach:
            return False
        side = abs(rx * fz - rz * fx) / norm
        return side - reach <= (max(ahead, 0.0) + reach) * tan_half_fov * 1.2 + 0.05


@dataclass(frozen=True, slots=True)
class _FloorGeometry:
    """World floor coordinates (x, z) of the rows from `first` down; `band` marks the floor pixels of
    the rows `first..no_wall` where floor and wall share a row."""

    first: int
    no_wall: int
    x: np.ndarray
    z: np.ndarray
    band: np.ndarray | None


@dataclass(slots=True)
class _Canvas:
    """What object drawing needs of the frame being rendered."""

    img: np.ndarray
    can_mask: np.ndarray
    cam: CameraPose
    lighting: Lighting
    light: np.ndarray
    can_drawn: bool = False


@dataclass(frozen=True, slots=True)
class RenderResult:
    rgb: np.ndarray
    can_mask: np.ndarray


class Renderer:
    """Renders scenes for one camera geometry (image size, field of view). Reuse it: it is stateless.

    The image is kept planar (3×H×W float32) while drawing: numpy is an order of magnitude faster on
    whole planes than on H×W×3 arrays broadcast against 3-vectors.
    """

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        size = config.image_size
        self.size = size
        self.focal = config.focal_px
        centre = (size - 1) / 2
        self.a = ((np.arange(size) - centre) / self.focal).astype(np.float32)  # per column
        self.b = ((np.arange(size) - centre) / self.focal).astype(np.float32)  # per row
        r2 = self.a[None, :] ** 2 + self.b[:, None] ** 2
        self.r2 = (r2 / r2.max()).astype(np.float32)
        self.ones_and_a = np.stack([np.ones_like(self.a), self.a])
        self.atlas = texture_atlas()
        self.noise = noise_bank()
        self.tan_half = math.tan(math.radians(config.camera_hfov_deg) / 2) * 1.5  # margin for roll/rotation

    # -- geometry -------------------------------------------------------------------------------
    def _along(self, cam: CameraPose, k: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """`ray · k` for every pixel of the window: an outer sum of a column and a row vector."""
        kx, ky, kz = float(k[0]), float(k[1]), float(k[2])
        f = cam.floats
        on_right = f[3] * kx + f[4] * ky + f[5] * kz
        on_down = f[6] * kx + f[7] * ky + f[8] * kz
        on_forward = f[9] * kx + f[10] * ky + f[11] * kz
        return self._outer(on_right, on_down, on_forward, rows, cols)

    def _outer(
        self, on_right: float, on_down: float, on_forward: float, rows: slice, cols: slice
    ) -> np.ndarray:
        """`on_right·a(col) + on_down·b(row) + on_forward` over the window, as an (H×2)@(2×W) product
        (twice as fast as numpy's broadcast add of a row and a column)."""
        b = self.b[rows]
        left = np.empty((b.shape[0], 2), dtype=np.float32)
        np.multiply(b, np.float32(on_down), out=left[:, 0])
        left[:, 0] += np.float32(on_forward)
        left[:, 1] = on_right
        return left @ self.ones_and_a[:, cols]

    def _axis(self, cam: CameraPose, axis: int, rows: slice, cols: slice) -> np.ndarray:
        """The world x (0), y (1) or z (2) component of every pixel's ray."""
        f = cam.floats
        return self._outer(f[3 + axis], f[6 + axis], f[9 + axis], rows, cols)

    def project(self, cam: CameraPose, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points → (pixel coordinates N×2 as float, camera depth N)."""
        pc = cam.to_camera(points)
        depth = pc[:, 2]
        safe = np.maximum(depth, NEAR_M)
        centre = (self.size - 1) / 2
        uv = np.stack([pc[:, 0] / safe * self.focal + centre, pc[:, 1] / safe * self.focal + centre], axis=1)
        return uv, depth

    def _bbox(self, uv: np.ndarray, depth: np.ndarray, pad: int = 2) -> tuple[slice, slice] | None:
        """Pixel window covering projected points; the whole frame if some lie behind the camera."""
        if (depth <= NEAR_M).all():
            return None
        if (depth <= NEAR_M).any():
            return slice(0, self.size), slice(0, self.size)
        u0, v0 = np.floor(uv.min(axis=0)).astype(int) - pad
        u1, v1 = np.ceil(uv.max(axis=0)).astype(int) + pad + 1
        u0, v0 = max(int(u0), 0), max(int(v0), 0)
        u1, v1 = min(int(u1), self.size), min(int(v1), self.size)
        if u0 >= u1 or v0 >= v1:
            return None
        return slice(v0, v1), slice(u0, u1)

    # -- the frame ------------------------------------------------------------------------------
    def render(
        self,
        scene: Scene,
        pose: CarPose,
        rng: np.random.Generator,
        pitch_jitter_deg: float = 0.0,
        roll_deg: float = 0.0,
    ) -> RenderResult:
        cam = CameraPose.from_car(
            pose, scene.camera_height_m, scene.camera_tilt_deg, pitch_jitter_deg, roll_deg
        )
        img, floor = self._floor_and_wall(scene, cam)
        light = _light_vector(scene.lighting)
        if floor is not None:
            for mat in scene.mats:
                self._draw_mat(img, cam, floor, mat)
            for shadow in (*scene.shadows, *self._object_shadows(scene, light, cam)):
                if cam.in_view(shadow.x, shadow.z, max(shadow.width, shadow.depth), self.tan_half):
                    self._shade_floor(img, cam, floor, shadow)
        can_mask = np.zeros((self.size, self.size), dtype=bool)
        objects: list[tuple[float, Cylinder | Box, bool]] = []
        for cyl in scene.cylinders:
            if cam.in_view(cyl.x, cyl.z, cyl.radius, self.tan_half):
                objects.append((_distance(cam, cyl.x, cyl.z), cyl, False))
        for box in scene.boxes:
            if cam.in_view(box.x, box.z, max(box.width, box.depth), self.tan_half):
                objects.append((_distance(cam, box.x, box.z), box, False))
        if scene.can is not None:
            objects.append((_distance(cam, scene.can.x, scene.can.z), scene.can, True))
        canvas = _Canvas(img, can_mask, cam, scene.lighting, light)
        for _, obj, is_can in sorted(objects, key=lambda item: -item[0]):
            if isinstance(obj, Cylinder):
                self._draw_cylinder(canvas, obj, is_can)
            else:
                self._draw_box(canvas, obj)
        rgb = self._expose(img, scene.lighting, rng)
        return RenderResult(rgb, can_mask)

    def _floor_rows(self, cam: CameraPose, wall_z: float) -> tuple[int, int]:
        """(first row holding floor, first row holding no wall).

        A ray sees the floor when it points down and meets the floor before the wall; along an image
        column both conditions are linear in the row, so the boundary rows of the two end columns follow
        from two small linear solves (no per-pixel work).
        """
        f = cam.floats
        h, reach = f[1], wall_z - f[2]
        centre = (self.size - 1) / 2
        firsts: list[float] = []
        lasts: list[float] = []
        for a in (float(self.a[0]), float(self.a[-1])):
            # dy(b) = py + qy b and dz(b) = pz + qz b; floor where dy < 0 and h dz + reach dy < 0
            py, qy = f[4] * a + f[10], f[7]
            pz, qz = f[5] * a + f[11], f[8]
            pg, qg = h * pz + reach * py, h * qz + reach * qy
            if qy >= 0 or qg >= 0:  # not an upright, forward-looking camera: take the slow, general path
                return 0, self.size
            # both conditions hold below their root rows
            root_down = -py / qy if qy != 0 else -1e9
            root_floor = -pg / qg if qg != 0 else -1e9
            boundary = max(root_down, root_floor) * self.focal + centre
            firsts.append(boundary)
            lasts.append(boundary)
        first = min(max(math.floor(min(firsts)), 0), self.size)
        no_wall = min(max(math.ceil(max(lasts)) + 1, 0), self.size)
        return first, max(no_wall, first)

    def _floor_geometry(self, cam: CameraPose, wall_z: float, first: int, no_wall: int) -> _FloorGeometry:
        """World floor coordinates of every pixel from row `first` down (the floor band).

        They are smooth in the image, so they are computed at every other pixel and resized up (a
        quarter of the work); the floor/wall band rows are classified at full resolution.
        """
        h = np.float32(cam.centre[1])
        n_rows = self.size - first
        step = 2 if n_rows >= 8 else 1
        rows, cols = slice(first, self.size, step), slice(0, self.size, step)
        t = h / np.maximum(-self._axis(cam, 1, rows, cols), np.float32(1e-5))
        x = t * self._axis(cam, 0, rows, cols)
        x += np.float32(cam.centre[0])
        z = t * self._axis(cam, 2, rows, cols)
        z += np.float32(cam.centre[2])
        if step > 1:
            x = cv2.resize(x, (self.size, n_rows), interpolation=cv2.INTER_LINEAR)
            z = cv2.resize(z, (self.size, n_rows), interpolation=cv2.INTER_LINEAR)
        band = None
        if no_wall > first:
            band_rows, full = slice(first, no_wall), slice(0, self.size)
            dy = self._axis(cam, 1, band_rows, full)
            reach = np.float32(wall_z - cam.centre[2])
            band = (dy < 0) & (h * self._axis(cam, 2, band_rows, full) < reach * -dy)
        return _FloorGeometry(first, no_wall, x, z, band)

    def _floor_lum(self, scene: Scene, cam: CameraPose, geo: _FloorGeometry) -> np.ndarray:
        look = scene.floor
        scale = FLOOR_SIZE / look.metres_per_tile
        c, s = np.float32(math.cos(look.rotation) * scale), np.float32(math.sin(look.rotation) * scale)
        tu = geo.x * c
        tu -= geo.z * s
        tu += np.float32(look.offset[0])
        tv = geo.x * s
        tv += geo.z * c
        tv += np.float32(look.offset[1])
        mask = FLOOR_SIZE - 1
        index = (tv.astype(np.int32) & mask) << 8
        index |= tu.astype(np.int32) & mask
        # blur level by distance, per row (the centre column's range; roll is small)
        h = float(cam.centre[1])
        centre_dy = self._axis(cam, 1, slice(geo.first, self.size), slice(self.size // 2, self.size // 2 + 1))
        t_row = np.float32(h) / np.maximum(-centre_dy[:, 0], np.float32(1e-5))
        level = _blur_level(t_row, look.metres_per_tile, h, self.focal)
        index += ((level << 16) + self.atlas.floor_base[(look.texture, look.variant)])[:, None]
        return self.atlas.flat.take(index)

    def _wall_lum(self, scene: Scene, cam: CameraPose, rows: slice) -> np.ndarray:
        """The wall's texture over `rows`, looked up at every other pixel and resized up: the wall has no
        detail finer than a few pixels, and this halves the cost of a third of the frame."""
        n_rows = rows.stop - rows.start
        if n_rows < 4:
            return self._wall_texels(scene, cam, rows, slice(0, self.size))
        coarse = self._wall_texels(scene, cam, slice(rows.start, rows.stop, 2), slice(0, self.size, 2))
        return cv2.resize(coarse, (self.size, n_rows), interpolation=cv2.INTER_LINEAR)

    def _wall_texels(self, scene: Scene, cam: CameraPose, rows: slice, full: slice) -> np.ndarray:
        dz = self._axis(cam, 2, rows, full)
        t = np.float32(scene.wall.z - cam.centre[2]) / np.maximum(dz, np.float32(1e-5))
        px = np.float32(WALL_PX_PER_M)
        wu = t * self._along(cam, _UNIT[0] * WALL_PX_PER_M, rows, full)
        wu += np.float32(cam.centre[0] * WALL_PX_PER_M)
        wv = t * self._along(cam, _UNIT[1] * -WALL_PX_PER_M, rows, full)
        wv += np.float32(WALL_H - 1) - np.float32(cam.centre[1]) * px
        _clip(wv, 0, WALL_H - 1)
        index = wv.astype(np.int32) * WALL_W
        index += wu.astype(np.int32) & (WALL_W - 1)
        index += self.atlas.wall_base[scene.wall.variant]
        return self.atlas.flat.take(index)

    def _floor_and_wall(self, scene: Scene, cam: CameraPose) -> tuple[np.ndarray, _FloorGeometry | None]:
        size = self.size
        img = np.empty((3, size, size), dtype=np.float32)
        first_floor, no_wall = self._floor_rows(cam, scene.wall.z)
        floor_tint, wall_tint = scene.floor.tint, scene.wall.tint
        if no_wall > 0:
            wall = self._wall_lum(scene, cam, slice(0, no_wall))
            for ch in range(3):
                np.multiply(wall, np.float32(wall_tint[ch] / LUMINANCE_SCALE), out=img[ch, :no_wall])
        if first_floor >= size:
            return img, None
        geo = self._floor_geometry(cam, scene.wall.z, first_floor, no_wall)
        floor = self._floor_lum(scene, cam, geo)
        lo = no_wall - first_floor  # rows of the band holding both
        for ch in range(3):
            np.multiply(floor[lo:], np.float32(floor_tint[ch] / LUMINANCE_SCALE), out=img[ch, no_wall:])
        if geo.band is not None:
            band = slice(first_floor, no_wall)
            for ch in range(3):
                img[ch, band] = np.where(
                    geo.band, floor[:lo] * np.float32(floor_tint[ch] / LUMINANCE_SCALE), img[ch, band]
                )
        return img, geo

    def _floor_window(
        self, cam: CameraPose, geo: _FloorGeometry, patch: Mat | Shadow, margin: float
    ) -> tuple[slice, slice] | None:
        """Pixel window of a floor rectangle (grown by `margin`), from its four corners in plain floats (4
        points are cheaper in Python than in numpy); corners behind the camera are clipped away."""
        f = cam.floats
        c, s = math.cos(patch.yaw), math.sin(patch.yaw)
        hw, hd = patch.width / 2 + margin, patch.depth / 2 + margin
        points: list[tuple[float, float, float]] = []
        for u, v in ((-hw, -hd), (hw, -hd), (hw, hd), (-hw, hd)):
            ox, oy, oz = patch.x + u * c + v * s - f[0], -f[1], patch.z - u * s + v * c - f[2]
            points.append(
                (
                    ox * f[3] + oy * f[4] + oz * f[5],
                    ox * f[6] + oy * f[7] + oz * f[8],
                    ox * f[9] + oy * f[10] + oz * f[11],
                )
            )
        if min(p[2] for p in points) < NEAR_M:
            clipped = _clip_near(np.array(points))
            if clipped is None:
                return None
            points = [(float(p[0]), float(p[1]), float(p[2])) for p in clipped]
        us = [p[0] / p[2] for p in points]
        vs = [p[1] / p[2] for p in points]
        centre = (self.size - 1) / 2
        focal = self.focal
        u0 = max(math.floor(min(us) * focal + centre) - 2, 0)
        u1 = min(math.ceil(max(us) * focal + centre) + 3, self.size)
        v0 = max(math.floor(min(vs) * focal + centre) - 2, geo.first)
        v1 = min(math.ceil(max(vs) * focal + centre) + 3, self.size)
        if u0 >= u1 or v0 >= v1:
            return None
        return slice(v0, v1), slice(u0, u1)

    def _floor_coverage(
        self, geo: _FloorGeometry, window: tuple[slice, slice], patch: Mat | Shadow, soft: float
    ) -> np.ndarray:
        """Soft coverage (0..1) of a floor rectangle or ellipse over a pixel window (floor pixels only)."""
        rows, cols = window
        local = slice(rows.start - geo.first, rows.stop - geo.first)
        px = geo.x[local, cols] - np.float32(patch.x)
        pz = geo.z[local, cols] - np.float32(patch.z)
        c, s = np.float32(math.cos(patch.yaw)), np.float32(math.sin(patch.yaw))
        u = px * c
        u -= pz * s
        v = px * s
        v += pz * c
        hw, hd = patch.width / 2, patch.depth / 2
        inv_soft = 1.0 / max(soft, 1e-4)
        if isinstance(patch, Shadow) and patch.elliptic:
            u *= u
            u *= np.float32(1 / hw**2)
            v *= v
            v *= np.float32(1 / hd**2)
            u += v
            np.sqrt(u, out=u)  # the elliptic radius: 1 on the rim
            gain = min(hw, hd) * inv_soft
            u *= np.float32(-gain)
            u += np.float32(gain + 0.5)
            cover = _clip(u, 0.0, 1.0)
        else:
            np.abs(u, out=u)
            np.abs(v, out=v)
            u *= np.float32(-inv_soft)
            u += np.float32(hw * inv_soft + 0.5)
            v *= np.float32(-inv_soft)
            v += np.float32(hd * inv_soft + 0.5)
            _clip(u, 0.0, 1.0)
            _clip(v, 0.0, 1.0)
            u *= v
            cover = u
        if geo.band is not None and local.start < geo.band.shape[0]:
            stop = min(local.stop, geo.band.shape[0])
            cover[: stop - local.start] *= geo.band[local.start : stop, cols]
        return cover

    def _shade_floor(self, img: np.ndarray, cam: CameraPose, geo: _FloorGeometry, shadow: Shadow) -> None:
        window = self._floor_window(cam, geo, shadow, shadow.softness)
        if window is None:
            return
        factor = self._floor_coverage(geo, window, shadow, shadow.softness)
        factor *= np.float32(-shadow.darkness)
        factor += np.float32(1.0)
        img[:, window[0], window[1]] *= factor

    def _draw_mat(self, img: np.ndarray, cam: CameraPose, geo: _FloorGeometry, mat: Mat) -> None:
        window = self._floor_window(cam, geo, mat, 0.004)
        if window is None:
            return
        rows, cols = window
        cover = self._floor_coverage(geo, window, mat, 0.004)
        grain = self.noise[0, rows, cols] * np.float32(0.06) + np.float32(1.0)
        keep = 1.0 - cover
        cover *= grain
        for ch in range(3):
            img[ch, rows, cols] = img[ch, rows, cols] * keep + cover * np.float32(mat.colour[ch])

    def _object_shadows(self, scene: Scene, light: np.ndarray, cam: CameraPose | None = None) -> list[Shadow]:
        """Soft contact/cast shadows of every object standing on the floor, away from the light."""
        strength = scene.lighting.shadow_strength
        lx, lz = -light[0], -light[2]
        norm = math.hypot(lx, lz) or 1.0
        lx, lz = lx / norm, lz / norm
        reach = 1.0 / math.tan(max(scene.lighting.light_elevation, 0.2))
        yaw = -math.atan2(lx, lz)
        shadows: list[Shadow] = []
        cylinders = list(scene.cylinders) + ([scene.can] if scene.can is not None else [])
        for cyl in cylinders:
            length = min(cyl.height * reach, 0.4)
            if cam is not None and _distance(cam, cyl.x, cyl.z) > SHADOW_RANGE_M:
                continue
            shadows.append(
                Shadow(
                    cyl.x + lx * length / 2,
                    cyl.z + lz * length / 2,
                    cyl.radius * 2.2,
                    length + cyl.radius * 2,
                    darkness=strength,
                    yaw=yaw,
                    softness=0.02,
                    elliptic=True,
                )
            )
        for box in scene.boxes:
            if cam is not None and _distance(cam, box.x, box.z) > SHADOW_RANGE_M:
                continue
            if box.base_y > 0.05:  # table tops: a broad soft shadow underneath
                shadows.append(
                    Shadow(box.x, box.z, box.width, box.depth, strength * 0.6, box.yaw, softness=0.08)
                )
            elif box.width > 0.06:  # not for table legs
                shadows.append(
                    Shadow(box.x, box.z, box.width + 0.04, box.depth + 0.04, strength * 0.8, box.yaw, 0.04)
                )
        return shadows

    def _draw_cylinder(self, canvas: _Canvas, cyl: Cylinder, is_can: bool) -> None:
        ring = np.stack([cyl.x + cyl.radius * _COS16, np.zeros(16), cyl.z + cyl.radius * _SIN16], axis=1)
        top = ring.copy()
        top[:, 1] = cyl.height
        uv, depth = self.project(canvas.cam, np.concatenate([ring, top]))
        window = self._bbox(uv, depth, pad=3)
        if window is None:
            return
        hits = self._cylinder_hits(canvas.cam, cyl, window, bool((depth <= NEAR_M).any()))
        if not hits.body.any() and not hits.cap.any():
            return
        shade, gloss = _cylinder_shading(hits, cyl, canvas.lighting, canvas.light)
        lid = canvas.lighting.ambient + 0.6 * max(float(canvas.light[1]), 0.0)
        body, cap, rows, cols = hits.body, hits.cap, hits.rows, hits.cols
        has_cap = bool(cap.any())
        edge = cap & (hits.rr >= (hits.r * np.float32(0.85)) ** 2) if has_cap else cap
        for ch in range(3):
            plane = canvas.img[ch, rows, cols]
            column_colour = np.float32(cyl.colour[ch]) * shade + gloss
            np.copyto(plane, column_colour[None, :], where=body)
            if has_cap:
                lid_colour = np.float32(cyl.colour[ch] * lid + 0.15 * cyl.specular)
                plane[cap] = lid_colour
                plane[edge] = lid_colour + np.float32(0.25 * cyl.specular + 0.05)
        drawn = body | cap
        mask_region = canvas.can_mask[rows, cols]
        if is_can:
            mask_region[drawn] = True
            canvas.can_drawn = True
        elif canvas.can_drawn:
            mask_region[drawn] = False

    def _cylinder_hits(
        self, cam: CameraPose, cyl: Cylinder, window: tuple[slice, slice], behind: bool
    ) -> _CylinderHits:
        """Where the rays of `window` hit the cylinder's side (`body`) and, seen from above, its lid."""
        rows, cols = window
        dx = self._axis(cam, 0, rows, cols)
        dy = self._axis(cam, 1, rows, cols)
        dz = self._axis(cam, 2, rows, cols)
        ox = np.float32(cam.centre[0] - cyl.x)
        oz = np.float32(cam.centre[2] - cyl.z)
        h = np.float32(cam.centre[1])
        r = np.float32(cyl.radius)
        # ray–cylinder: qa t² + 2 qb t + qc = 0 in the floor plane; the nearer root is the visible side
        qa = dx * dx
        qa += dz * dz
        qb = self._along(cam, np.array([float(ox), 0.0, float(oz)]), rows, cols)
        qc = ox * ox + oz * oz - r * r
        disc = qb * qb
        disc -= qa * qc
        t = np.maximum(disc, 0)
        np.sqrt(t, out=t)
        t += qb
        t /= qa
        t *= np.float32(-1.0)
        y = t * dy
        y += h
        body = disc >= 0
        body &= y >= 0
        body &= y <= np.float32(cyl.height)
        if behind:  # partly behind the camera: keep only hits in front
            body &= t > 0
        cap = np.zeros_like(body)
        rr = t
        if cam.centre[1] > cyl.height:
            # the lid: where the ray crosses the top plane inside the circle (camera above it)
            t_top = np.float32(cyl.height - cam.centre[1]) / np.minimum(dy, np.float32(-1e-6))
            px = t_top * dx
            px += ox
            pz = t_top * dz
            pz += oz
            rr = px * px
            rr += pz * pz
            cap = rr <= r * r
            cap &= ~body
        return _CylinderHits(rows, cols, dx, dy, dz, ox, oz, r, qa, t, body, cap, rr)

    def _draw_box(self, canvas: _Canvas, box: Box) -> None:
        img, cam, lighting, light = canvas.img, canvas.cam, canvas.lighting, canvas.light
        c, s = math.cos(box.yaw), math.sin(box.yaw)
        hw, hd = box.width / 2, box.depth / 2
        y0, y1 = box.base_y, box.base_y + box.height
        cam_points = _box_corners(box, cam, c, s)
        all_in_front = min(p[2] for p in cam_points) >= NEAR_M
        pc = np.array(cam_points)
        if all_in_front:
            fixed_all = self._fixed_point(pc)
        cx, cy, cz = (float(v) for v in cam.centre)
        ym = (y0 + y1) / 2
        # (corner indices, outward normal, a point on the face) for the six faces
        faces: tuple[_Face, ...] = (
            (0, (0.0, -1.0, 0.0), (box.x, y0, box.z)),
            (1, (0.0, 1.0, 0.0), (box.x, y1, box.z)),
            (2, (s, 0.0, -c), (box.x - hd * s, ym, box.z - hd * c)),
            (3, (-s, 0.0, c), (box.x + hd * s, ym, box.z + hd * c)),
            (4, (c, 0.0, -s), (box.x + hw * c, ym, box.z - hw * s)),
            (5, (-c, 0.0, s), (box.x - hw * c, ym, box.z + hw * s)),
        )
        lx, ly, lz = (float(v) for v in light)
        drawn: list[np.ndarray] = []
        if max(box.width, box.depth) <= THIN_BOX_M:
            # a leg or a post: only the side facing the camera most squarely is worth drawing
            faces = (max(faces[2:], key=lambda face: _facing(face, cx, cz)),)
        for face, (nx, ny, nz), (fx, fy, fz) in faces:
            if nx * (cx - fx) + ny * (cy - fy) + nz * (cz - fz) <= 0:
                continue  # faces away from the camera
            if all_in_front:
                fixed = fixed_all[_BOX_FACES[face]]
            else:
                clipped = _clip_near(pc[_BOX_FACES[face]])
                if clipped is None:
                    continue
                fixed = self._fixed_point(clipped)
            shade = lighting.ambient + 0.7 * max(nx * lx + ny * ly + nz * lz, 0.0)
            for ch in range(3):
                cv2.fillConvexPoly(img[ch], fixed, box.colour[ch] * shade, lineType=cv2.LINE_8, shift=4)
            drawn.append(fixed)
        if drawn and canvas.can_drawn:
            self._occlude_can(canvas, drawn)

    def _occlude_can(self, canvas: _Canvas, drawn: list[np.ndarray]) -> None:
        """A box drawn after the can is nearer than it: its pixels are no longer the can's."""
        points = np.concatenate(drawn)
        lo = np.maximum(points.min(axis=0) // 16 - 1, 0)
        hi = np.minimum(points.max(axis=0) // 16 + 2, self.size)
        if (hi > lo).all():
            occluder = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
            for fixed in drawn:
                cv2.fillConvexPoly(occluder, fixed - lo * 16, 1, lineType=cv2.LINE_8, shift=4)
            canvas.can_mask[lo[1] : hi[1], lo[0] : hi[0]] &= occluder == 0

    def _fixed_point(self, camera_points: np.ndarray) -> np.ndarray:
        """Camera-space points in front of the camera → pixel coordinates in 1/16 px (OpenCV shift=4)."""
        centre = (self.size - 1) / 2
        uv = camera_points[:, :2] / camera_points[:, 2:3] * self.focal + centre
        _clip(uv, -4.0 * self.size, 5.0 * self.size)
        return (uv * 16 + 0.5).astype(np.int32)

    def _expose(self, img: np.ndarray, lighting: Lighting, rng: np.random.Generator) -> np.ndarray:
        """Exposure, white balance, vignette, light ramp, sensor noise, blur, JPEG: radiance → uint8."""
        # exposure × (1 + linear light ramp) × (1 − vignette·r²), all from precomputed whole-frame arrays
        gain = self._outer(
            float(lighting.ramp[0]), float(lighting.ramp[1]), 1.0, slice(0, self.size), slice(0, self.size)
        )
        falloff = self.r2 * np.float32(-lighting.vignette)
        falloff += np.float32(1.0)
        gain *= falloff
        gain *= np.float32(lighting.exposure * 255.0)
        noisy = self.config.sensor_noise and lighting.noise_sigma > 0
        if noisy:
            oy, ox = (int(v) for v in rng.integers(0, self.noise.shape[1] - self.size, size=2))
            noise = self.noise[:, oy : oy + self.size, ox : ox + self.size]
        planes = []
        for ch in range(3):
            plane = cv2.multiply(img[ch], gain, scale=float(lighting.white_balance[ch]))
            if noisy:
                plane = cv2.scaleAdd(noise[ch], lighting.noise_sigma * 255, plane)
            # |x| saturated to 0..255: the rare negative (noise on black) becomes a small positive value
            planes.append(cv2.convertScaleAbs(plane))
        rgb = cv2.merge(planes)
        if lighting.blur_sigma > 0.6:  # a soft lens: a 3×3 box blur
            rgb = cv2.blur(rgb, (3, 3))
        if self.config.jpeg_artifacts and lighting.jpeg_quality is not None:
            rgb = decode_rgb(encode_jpeg(rgb, lighting.jpeg_quality))
        return rgb


_BOX_FACES = tuple(
    np.array(face)
    for face in ((0, 1, 2, 3), (4, 7, 6, 5), (0, 4, 5, 1), (2, 6, 7, 3), (1, 5, 6, 2), (3, 7, 4, 0))
)
_UNIT = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0]))
_COS16 = np.cos(np.linspace(0, 2 * math.pi, 16, endpoint=False))
_SIN16 = np.sin(np.linspace(0, 2 * math.pi, 16, endpoint=False))


_Face = tuple[int, tuple[float, float, float], tuple[float, float, float]]
"""A box face: its index in _BOX_FACES, its outward normal, a point on it."""


def _facing(face: _Face, cx: float, cz: float) -> float:
    """How squarely a vertical face looks at the camera (cosine towards the camera, horizontally)."""
    _, (nx, _ny, nz), (fx, _fy, fz) = face
    dx, dz = cx - fx, cz - fz
    return (nx * dx + nz * dz) / (math.hypot(dx, dz) or 1.0)


def _clip(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """In-place clip with two ufunc calls (np.clip's Python wrapper costs more than the work here)."""
    np.maximum(values, low, out=values)
    return np.minimum(values, high, out=values)


def _blur_level(t_floor: np.ndarray, metres_per_tile: float, height: float, focal: float) -> np.ndarray:
    """Which blur level of the floor texture a pixel reads: its footprint along the floor, in texels.

    A floor pixel at range t covers about t²/(height·focal) metres along the view direction.
    """
    texel = metres_per_tile / FLOOR_SIZE
    level = np.zeros(t_floor.shape, dtype=np.int32)
    for footprint in (1.5, 3.0, 6.0)[: len(FLOOR_BLUR) - 1]:
        level += t_floor > np.float32(math.sqrt(footprint * texel * height * focal))
    return level


def _light_vector(lighting: Lighting) -> np.ndarray:
    """Unit vector towards the key light."""
    el, az = lighting.light_elevation, lighting.light_azimuth
    return np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])


def _distance(cam: CameraPose, x: float, z: float) -> float:
    return math.hypot(x - float(cam.centre[0]), z - float(cam.centre[2]))


def _clip_near(poly: np.ndarray) -> np.ndarray | None:
    """Clip a camera-space polygon against the near plane (Sutherland–Hodgman, one plane)."""
    out: list[np.ndarray] = []
    n = len(poly)
    for i in range(n):
        cur, nxt = poly[i], poly[(i + 1) % n]
        cur_in, nxt_in = cur[2] >= NEAR_M, nxt[2] >= NEAR_M
        if cur_in:
            out.append(cur)
        if cur_in != nxt_in:
            k = (NEAR_M - cur[2]) / (nxt[2] - cur[2])
            out.append(cur + k * (nxt - cur))
    if len(out) < 3:
        return None
    return np.array(out)


@lru_cache(maxsize=8)
def renderer_for(config: WorldConfig) -> Renderer:
    """One shared renderer per camera configuration (its textures are built once per process)."""
    return Renderer(config)


def _box_corners(box: Box, cam: CameraPose, c: float, s: float) -> list[tuple[float, float, float]]:
    """The box's 8 corners in camera coordinates (bottom four, then top four), in plain floats: numpy's
    per-call cost dominates for 8 points."""
    f = cam.floats
    hw, hd = box.width / 2, box.depth / 2
    cam_points: list[tuple[float, float, float]] = []
    for y in (box.base_y, box.base_y + box.height):
        for u, v in ((-hw, -hd), (hw, -hd), (hw, hd), (-hw, hd)):
            ox, oy, oz = box.x + u * c + v * s - f[0], y - f[1], box.z - u * s + v * c - f[2]
            cam_points.append(
                (
                    ox * f[3] + oy * f[4] + oz * f[5],
                    ox * f[6] + oy * f[7] + oz * f[8],
                    ox * f[9] + oy * f[10] + oz * f[11],
                )
            )
    return cam_points


@dataclass(frozen=True, slots=True)
class _CylinderHits:
    """Per pixel of a cylinder's window: the ray directions, the side's ray parameter and hit masks."""

    rows: slice
    cols: slice
    dx: np.ndarray
    dy: np.ndarray
    dz: np.ndarray
    ox: np.float32
    oz: np.float32
    r: np.float32
    qa: np.ndarray
    t: np.ndarray
    body: np.ndarray
    cap: np.ndarray
    rr: np.ndarray


def _cylinder_shading(
    hits: _CylinderHits, cyl: Cylinder, lighting: Lighting, light: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(diffuse shade, gloss) per column of the side: Lambert + Blinn-Phong on the outward normal, the view
    vector being the reversed ray. An upright cylinder's normal varies across it, hardly along it: shade one
    row (through the middle of the silhouette) and spread it over the columns."""
    body_rows = np.flatnonzero(hits.body.any(axis=1))
    mid = int(body_rows[len(body_rows) // 2]) if len(body_rows) else 0
    mdx, mdy, mdz, mt = hits.dx[mid], hits.dy[mid], hits.dz[mid], hits.t[mid]
    nx = _clip((hits.ox + mt * mdx) / hits.r, -1.0, 1.0)
    nz = _clip((hits.oz + mt * mdz) / hits.r, -1.0, 1.0)
    inv_len = 1.0 / np.sqrt(hits.qa[mid] + mdy * mdy)
    vx, vy, vz = -mdx * inv_len, -mdy * inv_len, -mdz * inv_len
    lx, ly, lz = (np.float32(v) for v in light)
    diffuse = np.maximum(nx * lx + nz * lz, 0)
    hx, hy, hz = vx + lx, vy + ly, vz + lz
    hn = np.sqrt(hx * hx + hy * hy + hz * hz) + np.float32(1e-6)
    spec = np.maximum((nx * hx + nz * hz) / hn, 0) ** np.float32(cyl.shininess)
    # a soft environment sheen (the room mirrored in a curved surface) towards the silhouette
    rim = np.maximum(0, 1 - np.abs(nx * vx + nz * vz)) ** 3
    shade = np.float32(lighting.ambient) + np.float32(0.8) * diffuse
    gloss = (np.float32(cyl.specular) * spec + np.float32(0.12 * cyl.specular) * rim) * np.float32(0.9)
    return shade, gloss
