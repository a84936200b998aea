"""Audit metrics, frame selection, occlusion variants, background specs and the sanity check's arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explain.audit_metrics import rests_on_background
from explain.background import evenly_spaced, load_background, parse_spec
from explain.errors import ExplainError
from explain.metrics import (
    below_horizon_mask,
    dilate,
    focus,
    look,
    mask_to_input,
    pixel_map,
    positive_share,
)
from explain.occlusion import VARIANTS, Occlusion, occlusion_table, top_share
from explain.sanity import cascading_randomisation, weighted_layers
from explain.selection import AutoSelector, TickInfo, parse_selector
from vision.labels import GO, STOP


def square_mask(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_focus_counts_positive_stop_attribution_inside_the_dilated_can() -> None:
    can = square_mask(64, 40, 20, 10)
    stop_map = np.full((64, 64), -0.01)
    stop_map[can] = 1.0  # all positive mass on the can
    stop_map[5, 5] = 0.5  # some on the background, but weaker than the can's strongest pixel
    score = focus(stop_map, can)
    assert score is not None
    assert score.on_can == pytest.approx(100 / 100.5)
    assert score.pointing_hit
    assert score.can_area == pytest.approx(dilate(can, 1).mean())
    assert score.can_area > can.mean()  # dilated: the outline counts


def test_pointing_game_misses_when_the_strongest_pixel_is_elsewhere() -> None:
    can = square_mask(64, 40, 20, 10)
    stop_map = np.zeros((64, 64))
    stop_map[can] = 0.1
    stop_map[2, 60] = 5.0
    score = focus(stop_map, can)
    assert score is not None and not score.pointing_hit
    assert score.on_can == pytest.approx(10.0 / 15.0)
    assert focus(stop_map, np.zeros((64, 64), dtype=bool)) is None  # no can, no focus


def test_a_uniform_map_scores_the_masks_area() -> None:
    can = square_mask(100, 50, 50, 20)
    score = focus(np.ones((100, 100)), can)
    assert score is not None
    assert score.on_can == pytest.approx(score.can_area)


def test_mask_follows_the_frames_crop_and_resize() -> None:
    mask = np.zeros((240, 320), dtype=bool)
    mask[100:140, 150:170] = True  # centred horizontally: survives the centre crop to 240×240
    small = mask_to_input(mask, 60)
    assert small.shape == (60, 60)
    rows, cols = np.nonzero(small)
    assert rows.min() == 25 and rows.max() == 34  # 100/4 .. 139/4
    assert cols.min() == (150 - 40) // 4


def test_look_reports_the_share_below_the_horizon_and_the_strongest_cells() -> None:
    stop_map = np.zeros((64, 64))
    stop_map[48:64, 0:16] = 3.0  # bottom-left cell
    stop_map[0:16, 48:64] = 1.0  # top-right cell
    result = look(stop_map, horizon=0.5)
    assert result.below_horizon == pytest.approx(0.75)
    assert result.top_regions[0].name == "bottom left" and result.top_regions[0].share == pytest.approx(0.75)
    assert result.top_regions[1].name == "top right"
    assert below_horizon_mask(10, 0.3)[3:].all() and not below_horizon_mask(10, 0.3)[:3].any()


def test_flags_are_for_stops_resting_on_background() -> None:
    on_can, off_can = {"stop_on_can": 0.8}, {"stop_on_can": 0.2}
    high, low = {"below_horizon": 0.9}, {"below_horizon": 0.1}
    assert not rests_on_background(True, {**on_can, **high}, True)
    assert rests_on_background(True, {**off_can, **high}, True)
    assert rests_on_background(True, {"stop_on_can": None, **high}, True)  # STOP with no can in view
    assert not rests_on_background(False, {**off_can, **low}, True)  # a GO is never flagged
    assert rests_on_background(True, low, False) and not rests_on_background(True, high, False)


def test_pixel_map_and_positive_share() -> None:
    values = np.stack([np.full((4, 4), 1.0), np.full((4, 4), -3.0), np.full((4, 4), 1.0)])
    assert pixel_map(values).sum() == pytest.approx(-16.0)
    assert positive_share(np.zeros((4, 4)), np.ones((4, 4), dtype=bool)) == 0.0


def ticks(p_stop: list[float], threshold: float = 0.5) -> list[TickInfo]:
    return [TickInfo(i, True, p, STOP if p >= threshold else GO, False) for i, p in enumerate(p_stop)]


def test_selectors() -> None:
    t = ticks([0.1, 0.2, 0.9, 0.9, 0.1, 0.55, 0.1, 0.1, 0.1, 0.1])
    assert parse_selector("all").select(t, 0.5) == list(range(10))
    assert parse_selector("changes").select(t, 0.5) == [2, 4, 5, 6]
    assert parse_selector("stride:4").select(t, 0.5) == [0, 4, 8]
    assert parse_selector("frames:3-5").select(t, 0.5) == [3, 4, 5]
    for bad in ("some", "stride:0", "frames:5-3", "stride:x"):
        with pytest.raises(ExplainError, match="--select"):
            parse_selector(bad)


def test_auto_takes_changes_faults_and_small_margins_first_and_caps_at_ten_percent() -> None:
    rng = np.random.default_rng(0)
    p = list(rng.choice([0.02, 0.98], size=300))
    p[100] = 0.52  # small margin
    p[200] = 0.45  # small margin
    t = ticks(p)
    t[150] = TickInfo(150, True, 0.02, GO, True)  # a fault with a frame
    t[151] = TickInfo(151, False, None, STOP, True)  # a fault without a frame: cannot be explained
    chosen = AutoSelector().select(t, 0.5)
    assert len(chosen) == int(0.1 * 299)  # capped at 10% of the framed ticks (there are more changes)
    assert chosen == sorted(chosen) and 150 in chosen and 151 not in chosen
    changes = parse_selector("changes").select(t, 0.5)
    assert changes[0] in chosen and changes[-1] in chosen  # thinned evenly, not cut
    quiet = ticks([0.02] * 200)
    quiet[120] = TickInfo(120, True, 0.02, GO, True)
    chosen = AutoSelector().select(quiet, 0.5)
    assert 120 in chosen and len(chosen) <= 20
    assert set(chosen) - {120}  # plus a stride sample


def test_occlusion_variants_replace_exactly_one_half() -> None:
    rgb = np.full((8, 8, 3), 100, dtype=np.uint8)
    rng = np.random.default_rng(0)
    top_white = Occlusion("top", "white").apply(rgb, rng)
    assert (top_white[:4] == 255).all() and (top_white[4:] == 100).all()
    bottom_black = Occlusion("bottom", "black").apply(rgb, rng)
    assert (bottom_black[4:] == 0).all() and (bottom_black[:4] == 100).all()
    noise = Occlusion("bottom", "noise").apply(rgb, rng)
    assert noise[4:].std() > 30 and (noise[:4] == 100).all()
    assert [v.name for v in VARIANTS] == [
        f"{h} {f}" for h in ("top", "bottom") for f in ("white", "black", "noise")
    ]


def test_occlusion_table_reports_decision_changes_and_attribution_movement() -> None:
    def explain(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # A stand-in network: STOP when the bottom half is dark; attribution where it is dark.
        dark = (rgb.mean(axis=3) < 50).astype(float)
        p = dark[:, 4:].mean(axis=(1, 2))
        return p, dark

    rgb = np.full((2, 8, 8, 3), 200, dtype=np.uint8)
    rgb[:, 4:] = 10  # dark bottom: STOP
    rows = {r.variant: r for r in occlusion_table(rgb, explain, threshold=0.5)}
    assert rows["bottom white"].decisions_changed == 2 and rows["top white"].decisions_changed == 0
    assert rows["top black"].top_share_after == pytest.approx(0.5)
    assert rows["top white"].top_share_before == 0.0
    assert top_share(np.ones((1, 8, 8)))[0] == pytest.approx(0.5)


def test_cascading_randomisation_reports_each_layer_from_the_top() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.ReLU(), nn.Linear(8, 2), nn.Sigmoid()).eval()
    x = torch.randn(3, 3, 4, 4)

    def maps(m: nn.Module) -> np.ndarray:
        # gradient × input of STOP: enough to see the weights change
        z = x.clone().requires_grad_(True)
        m(z)[:, STOP].sum().backward()
        return (z.grad * z).sum(1).detach().numpy()

    check = cascading_randomisation(model, maps, seed=1)
    assert [s.layer for s in check.steps] == ["3", "1"]
    assert [name for name, _ in weighted_layers(model)] == ["1", "3"]
    assert check.frames == 3
    assert abs(check.final) < 0.5 and check.passed
    # the audited model itself is untouched: a copy is randomised
    assert model[1].weight.abs().sum() > 0


def test_background_specs() -> None:
    assert parse_spec("sim:3@20").text == "sim:3@20"
    assert parse_spec("sim:0").count == 100
    for bad in ("sim:0@0", "nowhere", "sim:x"):
        with pytest.raises(ExplainError, match="--background"):
            load_background(bad, 64)
    background = load_background("sim:5@3", 64)
    assert background.images.shape == (3, 64, 64, 3) and background.images.dtype == np.uint8
    assert background.ids == ("sim:5#0", "sim:5#1", "sim:5#2")
    np.testing.assert_array_equal(load_background("sim:5@3", 64).images, background.images)  # seeded
    assert list(evenly_spaced(10, 4)) == [0, 3, 6, 9] and list(evenly_spaced(3, 5)) == [0, 1, 2]
