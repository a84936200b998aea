"""Named worlds: the training world (`default`), its rooms in flat light (`flat_light`, for training) and
worlds the training set never had (`shifted`).

A domain rewrites a sampled scene's look (floor, wall, light) and never its geometry: the can, the
obstacles and the labels stay exactly those of the scene kind, so a sim-to-real-like gap can be measured
without real frames. `default` changes nothing and draws no random numbers, so every seed renders the same
frames as before domains existed. `WorldConfig.domain` names the domain; `sample_scene` applies it.

`shifted` (what the training world never shows):

| part | training world | shifted |
| --- | --- | --- |
| floor colour | browns, greys, dull carpets | saturated green, blue, purple, yellow, teal, orange, white |
| floor scale | per texture: 0.25–3 m per tile | 0.08–0.2 m (fine) or 4–7 m (coarse) |
| wall colour | six off-whites and greys | saturated teal, magenta, orange, lime, navy |
| white balance | red/blue ±12 % | a colour cast: red/blue ±25–40 %, or green +25–35 % |
| exposure | e^N(0.2, 0.22) (≈ 0.8–1.9) | dim (0.45–0.65) or bright (2.0–2.6) |
| ambient light | 0.35–0.7 | 0.12–0.25 (hard light) or 0.8–0.95 (flat light) |
| vignette | 0–0.3 | 0.35–0.6 |

`flat_light` (a training option, session 10): the training world's rooms, white balance and vignette, in flat
light — ambient 0.7–0.8, exposure e^N(0.2, 0.4) (≈ 0.55–2.7: the training world's spread doubled, dim to
bright) — the light in which `edge-sim-5` missed cans on unfamiliar floors. It stops short of the shifted
world's flat light (ambient 0.8–0.95) and has none of its floors, walls or casts, so the shifted world stays
unseen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from vision.sim.scene import RGB, FloorLook, Lighting, Scene, WallLook


class Uniforms(Protocol):
    """The random draws a domain needs (`vision.sim.kinds.Draws` provides them)."""

    def random(self) -> float: ...

    def uniform(self, low: float, high: float) -> float: ...

    def normal(self, mean: float = 0.0, sd: float = 1.0) -> float: ...


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    description: str
    apply: Callable[[Scene, Uniforms], Scene] | None
    """Rewrites a sampled scene; None leaves it untouched (and draws nothing)."""


SHIFTED_FLOORS: tuple[RGB, ...] = (
    (0.20, 0.55, 0.22),  # green
    (0.18, 0.30, 0.80),  # blue
    (0.48, 0.22, 0.58),  # purple
    (0.88, 0.78, 0.18),  # yellow
    (0.12, 0.55, 0.55),  # teal
    (0.90, 0.45, 0.10),  # orange
    (0.95, 0.95, 0.93),  # near-white
)
SHIFTED_WALLS: tuple[RGB, ...] = (
    (0.10, 0.60, 0.60),
    (0.75, 0.15, 0.60),
    (0.95, 0.50, 0.10),
    (0.55, 0.85, 0.15),
    (0.12, 0.15, 0.45),
)


def _pick(rng: Uniforms, options: tuple[RGB, ...]) -> RGB:
    return options[min(int(rng.random() * len(options)), len(options) - 1)]


def _either(rng: Uniforms, low: tuple[float, float], high: tuple[float, float]) -> float:
    return rng.uniform(*low) if rng.random() < 0.5 else rng.uniform(*high)


def _shift_floor(floor: FloorLook, rng: Uniforms) -> FloorLook:
    return replace(
        floor, tint=_pick(rng, SHIFTED_FLOORS), metres_per_tile=_either(rng, (0.08, 0.2), (4.0, 7.0))
    )


def _cast(rng: Uniforms) -> RGB:
    """A strong colour cast: warm, cold or green (fluorescent), beyond the training world's ±12 %."""
    pick = rng.random()
    amount = rng.uniform(0.25, 0.4)
    if pick < 1 / 3:
        return (1.0 + amount, 1.0, 1.0 - amount)
    if pick < 2 / 3:
        return (1.0 - amount, 1.0, 1.0 + amount)
    return (1.0 - amount / 2, 1.0 + amount * 0.9, 1.0 - amount / 2)


def _shift_light(light: Lighting, rng: Uniforms) -> Lighting:
    return replace(
        light,
        exposure=_either(rng, (0.45, 0.65), (2.0, 2.6)),
        ambient=_either(rng, (0.12, 0.25), (0.8, 0.95)),
        white_balance=_cast(rng),
        vignette=rng.uniform(0.35, 0.6),
        light_elevation=rng.uniform(0.25, 1.5),
        light_azimuth=rng.uniform(-math.pi, math.pi),
    )


def flat_light(scene: Scene, rng: Uniforms) -> Scene:
    """The same room in flat light, from dim to bright (see the module text)."""
    light = replace(
        scene.lighting,
        ambient=rng.uniform(0.7, 0.8),
        exposure=math.exp(rng.normal(0.2, 0.4)),
    )
    return replace(scene, lighting=light)


def shifted(scene: Scene, rng: Uniforms) -> Scene:
    """The same scene with floor, wall and light the training world never had (see the module table)."""
    wall = WallLook(scene.wall.z, scene.wall.variant, _pick(rng, SHIFTED_WALLS))
    return replace(
        scene, floor=_shift_floor(scene.floor, rng), wall=wall, lighting=_shift_light(scene.lighting, rng)
    )


DOMAINS: Mapping[str, Domain] = {
    d.name: d
    for d in (
        Domain("default", "the training world", None),
        Domain("flat_light", "the training world's rooms in flat, bright light (for training)", flat_light),
        Domain("shifted", "floors, colours and light the training world never had", shifted),
    )
}
"""Worlds by name: `WorldConfig.domain` and every `--domain` option take their choices from here."""


def apply_domain(name: str, scene: Scene, rng: Uniforms) -> Scene:
    """`scene` as domain `name` shows it (the name was checked by `WorldConfig`)."""
    domain = DOMAINS[name]
    return scene if domain.apply is None else domain.apply(scene, rng)
