"""Procedural, tileable floor and wall textures, built once per process from a fixed seed.

Every texture is a luminance-and-colour pattern in 0..1 that a scene tints with its own colour. Floors come
in blur levels (a cheap mip-map: far floor pixels cover many texels, so they read a blurred level rather
than aliasing). All levels and walls live in one flat uint8 luminance atlas (value / 127.5 = luminance;
3 MB, so it stays in cache), and the renderer fetches every floor and wall pixel with a single `np.take`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FLOOR_SIZE = 256  # texels per side of a floor tile (a power of two: wrapping is a bit mask)
FLOOR_LEVELS = 4
FLOOR_BLUR = (0.0, 1.2, 2.5, 5.0)  # texels of blur per level
WALL_W, WALL_H = 512, 256
WALL_PX_PER_M = 128.0  # so a wall texture spans 4 m × 2 m
VARIANTS = 3
TEXTURE_SEED = 20240611
LUMINANCE_SCALE = 127.5
"""Atlas value per unit of luminance (the atlas is uint8; luminance runs 0..2)."""


def _periodic_blur(img: np.ndarray, sigma_y: float, sigma_x: float) -> np.ndarray:
    """Gaussian blur with wrap-around (so tiles stay seamless), done in the Fourier domain."""
    if sigma_x <= 0 and sigma_y <= 0:
        return img
    h, w = img.shape[:2]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    gain = np.exp(-2 * np.pi**2 * ((fy * sigma_y) ** 2 + (fx * sigma_x) ** 2))
    if img.ndim == 3:
        gain = gain[:, :, None]
    spectrum = np.fft.fft2(img, axes=(0, 1)) * gain
    return np.real(np.fft.ifft2(spectrum, axes=(0, 1)))


def _noise(
    rng: np.random.Generator, h: int, w: int, sigma_y: float, sigma_x: float | None = None
) -> np.ndarray:
    """Smooth tileable noise with zero mean and unit standard deviation."""
    out = _periodic_blur(rng.standard_normal((h, w)), sigma_y, sigma_y if sigma_x is None else sigma_x)
    return (out - out.mean()) / (out.std() + 1e-9)


def _wood(rng: np.random.Generator) -> np.ndarray:
    n = FLOOR_SIZE
    boards = (4, 5, 6, 8)[int(rng.integers(4))]
    width = n / boards
    u = np.arange(n)[None, :].repeat(n, 0)
    v = np.arange(n)[:, None].repeat(n, 1)
    board = (u // width).astype(int)
    lum = np.ones((n, n))
    grain = _noise(rng, n, n, 18.0, 0.6) * 0.07 + _noise(rng, n, n, 4.0, 0.4) * 0.05
    lum += grain
    for b in range(boards):
        cols = board == b
        lum[cols] *= 1.0 + rng.normal(0, 0.09)
        # plank ends: each board is cut at one or two places, staggered between boards
        for cut in rng.uniform(0, n, size=int(rng.integers(1, 3))):
            lum[cols & (np.abs(v - cut) < 1.2)] *= 0.55
    lum[(u % width) < 1.5] *= 0.5  # the seams between boards
    lum += _noise(rng, n, n, 1.0) * 0.02
    return np.clip(lum, 0, 2)


def _tiles(rng: np.random.Generator) -> np.ndarray:
    n = FLOOR_SIZE
    per_side = (1, 2, 4)[int(rng.integers(3))]
    size = n // per_side
    u = np.arange(n)[None, :]
    v = np.arange(n)[:, None]
    iu, iv = u // size, v // size
    lum = np.ones((n, n))
    tone = rng.normal(0, 0.04, size=(per_side, per_side))
    if rng.random() < 0.35:  # two-tone checker
        tone += np.where((np.arange(per_side)[:, None] + np.arange(per_side)[None, :]) % 2 == 0, 0.0, -0.35)
    lum += tone[iv, iu]
    lum += _noise(rng, n, n, 2.0) * 0.025 + _noise(rng, n, n, 12.0) * 0.03
    grout = ((u % size) < 3) | ((v % size) < 3)
    lum = np.where(grout, (0.6, 1.25)[int(rng.integers(2))], lum)
    return np.clip(lum, 0, 2)


def _carpet(rng: np.random.Generator) -> np.ndarray:
    n = FLOOR_SIZE
    lum = 1.0 + _noise(rng, n, n, 0.6) * 0.12 + _noise(rng, n, n, 2.0) * 0.05 + _noise(rng, n, n, 20.0) * 0.05
    return np.clip(lum, 0, 2)


def _concrete(rng: np.random.Generator) -> np.ndarray:
    n = FLOOR_SIZE
    lum = 1.0 + _noise(rng, n, n, 40.0) * 0.08 + _noise(rng, n, n, 8.0) * 0.05 + _noise(rng, n, n, 0.8) * 0.04
    speckle = _periodic_blur((rng.random((n, n)) < 0.004).astype(float), 0.8, 0.8)
    lum *= 1.0 - 0.35 * speckle / (speckle.max() + 1e-9)
    return np.clip(lum, 0, 2)


FLOOR_TEXTURES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "wood": _wood,
    "tiles": _tiles,
    "carpet": _carpet,
    "concrete": _concrete,
}
"""Floor texture makers by name (luminance patterns around 1.0)."""


def _wall(rng: np.random.Generator) -> np.ndarray:
    h, w = WALL_H, WALL_W
    lum = 1.0 + _noise(rng, h, w, 6.0) * 0.02 + _noise(rng, h, w, 40.0) * 0.05
    height = (h - 1 - np.arange(h))[:, None] / WALL_PX_PER_M  # metres above the floor per row
    skirting = height < rng.uniform(0.05, 0.1)
    lum = np.where(skirting, (0.6, 1.15)[int(rng.integers(2))], lum)
    # a door or panel somewhere along the wall: a darker (or lighter) rectangle with a frame
    left = int(rng.integers(0, w - 120))
    width = int(rng.integers(90, 120))
    panel = (height < rng.uniform(1.0, 1.9)) & (np.arange(w)[None, :] >= left)
    panel &= np.arange(w)[None, :] < left + width
    lum = np.where(panel, lum * rng.uniform(0.55, 1.2), lum)
    return np.clip(lum, 0, 2)


@dataclass(frozen=True, slots=True)
class TextureAtlas:
    """All textures' luminance in one flat array; the renderer computes indices into it."""

    flat: np.ndarray
    """uint8 luminance × 127.5 (luminance 0..2)."""
    floor_base: dict[tuple[str, int], int]
    wall_base: tuple[int, ...]

    @property
    def floor_names(self) -> tuple[str, ...]:
        return tuple(FLOOR_TEXTURES)


@lru_cache(maxsize=1)
def texture_atlas() -> TextureAtlas:
    """Build (once per process) every floor texture's blur levels and every wall texture."""
    rng = np.random.default_rng(TEXTURE_SEED)
    blocks: list[np.ndarray] = []
    floor_base: dict[tuple[str, int], int] = {}
    offset = 0
    for name, make in FLOOR_TEXTURES.items():
        for variant in range(VARIANTS):
            lum = make(rng)
            floor_base[(name, variant)] = offset
            for sigma in FLOOR_BLUR:
                level = _periodic_blur(lum, sigma, sigma).astype(np.float32)
                blocks.append(level.ravel())
                offset += FLOOR_SIZE * FLOOR_SIZE
    wall_base: list[int] = []
    for _ in range(VARIANTS):
        lum = _wall(rng).astype(np.float32)
        wall_base.append(offset)
        blocks.append(lum.ravel())
        offset += WALL_W * WALL_H
    flat = np.round(np.clip(np.concatenate(blocks, axis=0), 0.0, 2.0) * LUMINANCE_SCALE).astype(np.uint8)
    return TextureAtlas(flat, floor_base, tuple(wall_base))


@lru_cache(maxsize=1)
def noise_bank() -> np.ndarray:
    """A planar 3×512×512 standard-normal noise image; frames crop a random window (cheaper than drawing)."""
    rng = np.random.default_rng(TEXTURE_SEED + 1)
    return rng.standard_normal((3, 512, 512)).astype(np.float32)
