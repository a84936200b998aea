"""An out-of-distribution signal from image statistics: colour, exposure and sharpness (numpy only).

The network's feature means (`vision.ood.OodCalibration`) recognise other rooms and night light, but not a
colour cast or a blur: the training world already varies white balance and sharpness a little, and the
network learnt to ignore them. Cheap statistics of the frame the network sees catch those instead (about
0.3 ms a frame; computed from the normalized network input, so no caller changes):

| group | statistics | catches |
| --- | --- | --- |
| `room` | log R/G, log B/G, mean saturation of the bottom (floor) and top (wall) thirds | rooms, casts |
| `exposure` | luminance mean, median, 95th percentile, log std; log luminance of the top third | glare |
| `sharpness` | log ratios of 1-px to 2-px and of Laplacian to 1-px difference energy | blur |

The whole frame's grey-world chroma (`r_g`, `b_g`, once a group of its own) is no longer fitted: it depends on
what fills the view, and a coloured wall filling it at the end of a normal drive passed the STOP limit (two
normal closed-loop drives, tuning seeds 7600 and 11500), while the room group ranks colour casts as well
(AUROC 1.00 against 0.99). Files with a `colour` group still load and use it.

Each group is a Gaussian fitted on training frames (mean, shrunk inverse covariance); its Mahalanobis score
(per dimension) is divided by its held-out 99th percentile (`scale`), and the signal's score is the largest
of the three, so one strongly unusual group is not diluted by the usual ones. Exposure and sharpness are
one-sided (`SIDES`). Lens distortion (fisheye) is not caught: the cheap cues tried (detail at the border
against the centre, curvature of the horizon) do not separate it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vision.bundle import BundleError
from vision.ood_signal import OodInput, check_limits, fit_gaussian, float_matrix, mahalanobis, ramp
from vision.preprocess import Preprocessing

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
STATISTICS = (
    "r_g",
    "b_g",
    "floor_r_g",
    "floor_b_g",
    "floor_sat",
    "top_r_g",
    "top_b_g",
    "top_sat",
    "top_lum",
    "lum_mean",
    "lum_p50",
    "lum_p95",
    "lum_log_std",
    "sharp_e1_e2",
    "sharp_lap_e1",
    "sharp_log_e1",
)
GROUPS: dict[str, tuple[str, ...]] = {
    "room": ("floor_r_g", "floor_b_g", "floor_sat", "top_r_g", "top_b_g", "top_sat"),
    "exposure": ("top_lum", "lum_mean", "lum_p50", "lum_p95", "lum_log_std"),
    "sharpness": ("sharp_e1_e2", "sharp_lap_e1"),
}
SIDES: dict[str, int] = {  # +1: only above the training mean is unfamiliar, -1: only below; others both ways
    **dict.fromkeys(GROUPS["exposure"], 1),
    **dict.fromkeys(GROUPS["sharpness"], -1),
}
"""One-sided statistics. Exposure counts only when brighter than training: a dark wall or box filling the
view is dark like night, and drives end in front of them (night is the features signal's, which sees it).
Sharpness counts only when blurrier: a flat surface filling the view is all sensor noise, "sharper" than
any scene, and is no blur."""
EPS = 1e-3
STRIDE = 4  # colour and exposure from every 4th pixel each way (56×56 of 224×224): the same numbers ± noise


def _chroma(pixels: np.ndarray) -> list[float]:
    """log R/G, log B/G of the pixels' mean colour (3×N)."""
    r, g, b = pixels.mean(axis=1) + EPS
    return [float(np.log(r / g)), float(np.log(b / g))]


def _saturation(pixels: np.ndarray) -> float:
    top = pixels.max(axis=0) + EPS
    return float(((top - pixels.min(axis=0)) / top).mean())


def _colour_and_exposure(rgb: np.ndarray) -> list[float]:
    """The colour, room and exposure statistics of a subsampled 3×h×w image in 0..1."""
    h = rgb.shape[1]
    floor = rgb[:, 2 * h // 3 :].reshape(3, -1)
    top = rgb[:, : h // 3].reshape(3, -1)
    luma = np.tensordot(LUMA, rgb.reshape(3, -1), 1)
    ordered = np.partition(luma, (luma.size // 2, luma.size * 95 // 100))
    return [
        *_chroma(rgb.reshape(3, -1)),
        *_chroma(floor),
        _saturation(floor),
        *_chroma(top),
        _saturation(top),
        float(np.log(np.tensordot(LUMA, top, 1).mean() + EPS)),
        float(luma.mean()),
        float(ordered[luma.size // 2]),
        float(ordered[luma.size * 95 // 100]),
        float(np.log(luma.std() + EPS)),
    ]


def _energies(rows: np.ndarray) -> tuple[float, float, float]:
    """Mean squared 1-px difference, 2-px difference and second difference along the rows' last axis."""
    d1 = rows[:, 1:] - rows[:, :-1]
    d2 = rows[:, 2:] - rows[:, :-2]
    dd = d1[:, 1:] - d1[:, :-1]
    return (
        float(np.vdot(d1, d1)) / d1.size,
        float(np.vdot(d2, d2)) / d2.size,
        float(np.vdot(dd, dd)) / dd.size,
    )


def _sharpness(luma: np.ndarray) -> list[float]:
    """Blur moves the energy of differences from short to longer steps: ratios of full-resolution energies,
    along every 2nd row and down every 2nd column (half the work, the same resolution along the step)."""
    ex, ey = _energies(luma[::2]), _energies(luma[:, ::2].T)
    e1, e2, el = ex[0] + ey[0] + 1e-7, ex[1] + ey[1] + 1e-7, ex[2] + ey[2] + 1e-8
    return [float(np.log(e1 / e2)), float(np.log(el / e1)), float(np.log(e1))]


def image_statistics(image: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The `STATISTICS` of one normalized network input (3×S×S float32, see `vision.preprocess`)."""
    x = image if image.dtype == np.float32 else image.astype(np.float32)
    mean = np.asarray(prep.mean, dtype=np.float32)
    std = np.asarray(prep.std, dtype=np.float32)
    small = x[:, ::STRIDE, ::STRIDE] * std[:, None, None] + mean[:, None, None]
    luma = np.tensordot(LUMA * std, x, 1)  # the luminance in 0..1 less a constant: differences need no more
    return np.array(_colour_and_exposure(small) + _sharpness(luma), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class StatGroup:
    """One group's Gaussian over its statistics and its held-out 99th-percentile score (`scale`)."""

    name: str
    names: tuple[str, ...]
    mean: np.ndarray
    precision: np.ndarray
    scale: float = 1.0
    sides: tuple[int, ...] = ()
    """Per statistic: +1 counts only above the mean, -1 only below, 0 (or none given) both ways."""

    @property
    def index(self) -> list[int]:
        return [STATISTICS.index(n) for n in self.names]

    def score(self, stats: np.ndarray) -> float:
        x = stats[self.index]
        if self.sides:
            side = np.asarray(self.sides)
            x = np.where(side * (x - self.mean) < 0, self.mean, x)  # the side that does not count: as usual
        return mahalanobis(x, self.mean, self.precision) / self.scale

    def to_doc(self) -> dict[str, object]:
        return {
            "name": self.name,
            "statistics": list(self.names),
            "scale": self.scale,
            "sides": list(self.sides),
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, object], where: str) -> StatGroup:
        names = tuple(str(n) for n in doc["statistics"])  # type: ignore[attr-defined]
        group = cls(
            str(doc["name"]),
            names,
            float_matrix(doc, "mean"),
            float_matrix(doc, "precision"),
            float(doc["scale"]),  # type: ignore[arg-type]
            tuple(int(v) for v in doc.get("sides", ())),  # type: ignore[attr-defined]
        )
        unknown = [n for n in names if n not in STATISTICS]
        shapes = (group.mean.shape, group.precision.shape, len(group.sides) in (0, len(names)))
        if unknown or shapes != ((len(names),), (len(names),) * 2, True):
            raise BundleError(
                f"{where}: image statistics {unknown or list(names)} do not fit; calibrate again"
            )
        if not group.scale > 0:
            raise BundleError(f"{where}: image statistics scale {group.scale} must be > 0; calibrate again")
        return group


@dataclass(frozen=True, slots=True)
class ImageStatsSignal:
    """The image-statistics signal: the largest of its groups' scaled scores, with its own limits."""

    kind: ClassVar[str] = "image"
    groups: tuple[StatGroup, ...]
    slow_from: float
    stop_above: float
    source: str = ""

    @property
    def tensors(self) -> tuple[str, ...]:
        return ()

    def score(self, stats: np.ndarray) -> float:
        return max(g.score(stats) for g in self.groups)

    def group_scores(self, stats: np.ndarray) -> dict[str, float]:
        return {g.name: g.score(stats) for g in self.groups}

    def measure(self, frame: OodInput) -> float:
        return self.score(image_statistics(frame.image, frame.prep))

    def unfamiliarity(self, score: float) -> float:
        return ramp(score, self.slow_from, self.stop_above)

    def to_doc(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "slow_from": self.slow_from,
            "stop_above": self.stop_above,
            "source": self.source,
            "groups": [g.to_doc() for g in self.groups],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, object], where: str) -> ImageStatsSignal:
        groups = tuple(StatGroup.from_doc(g, where) for g in doc["groups"])  # type: ignore[attr-defined]
        if not groups:
            raise BundleError(f"{where}: the image statistics signal has no groups; calibrate again")
        signal = cls(groups, float(doc["slow_from"]), float(doc["stop_above"]), str(doc.get("source", "")))  # type: ignore[arg-type]
        check_limits(signal.slow_from, signal.stop_above, where)
        return signal


def fit_image_signal(
    train: np.ndarray,
    held: np.ndarray,
    stop_margin: float,
    shrink: float = 1e-2,
    groups: Mapping[str, Sequence[str]] = GROUPS,
) -> ImageStatsSignal:
    """Fit each group on `train` statistics (N×len(STATISTICS)); scales and limits from `held` ones:
    slow from their 99th percentile score, STOP above `stop_margin` × their largest."""
    fitted = []
    for name, names in groups.items():
        index = [STATISTICS.index(n) for n in names]
        mean, precision = fit_gaussian(train[:, index], shrink)
        sides = tuple(SIDES.get(n, 0) for n in names)
        group = StatGroup(name, tuple(names), mean, precision, 1.0, sides)
        scale = max(float(np.percentile([group.score(row) for row in held], 99)), 1e-9)
        fitted.append(StatGroup(name, tuple(names), mean, precision, scale, sides))
    probe = ImageStatsSignal(tuple(fitted), 1.0, 2.0)
    scores = np.array([probe.score(row) for row in held])
    source = (
        f"{len(train)} frames fit, {len(held)} held out: p99 {np.percentile(scores, 99):.2f}, "
        f"max {scores.max():.2f}, stop at {stop_margin} x max"
    )
    return ImageStatsSignal(
        tuple(fitted), float(np.percentile(scores, 99)), float(stop_margin * scores.max()), source
    )
