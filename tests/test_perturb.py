"""Sensor and timing perturbations: every registry entry acts, the same seed acts the same way."""

from __future__ import annotations

import numpy as np
import pytest

from car.timing import SimulatedClock
from vision.frame import Frame
from vision.sim.perturb import PERTURBATIONS, PerturbedDetector, PerturbedSource, make_perturbations

IMAGE_KINDS = ("motion_blur", "exposure", "white_balance", "noise", "fisheye")


def frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    rgb = np.full((64, 64, 3), 110, np.uint8)
    rgb[20:40, 10:50] = rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)
    return rgb


@pytest.mark.parametrize("name", IMAGE_KINDS)
def test_image_perturbations_change_the_frame_deterministically(name: str) -> None:
    rgb = frame()
    (a,), (b,) = make_perturbations([name], 7), make_perturbations([name], 7)
    out_a = a.image(rgb, np.random.default_rng(1))
    out_b = b.image(rgb, np.random.default_rng(1))
    assert out_a.shape == rgb.shape and out_a.dtype == np.uint8
    assert np.array_equal(out_a, out_b) and not np.array_equal(out_a, rgb)


class _Counter:
    name = "counter"

    def __init__(self, clock: SimulatedClock) -> None:
        self.clock, self.seq = clock, 0

    def open(self) -> _Counter:
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> _Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def read(self, timeout: float) -> Frame:
        self.clock.advance(1 / 30)
        self.seq += 1
        return Frame(self.seq, self.clock.now(), frame(), "counter")


def test_timing_perturbations_drop_delay_and_slow_inference() -> None:
    assert set(IMAGE_KINDS) | {"dropped_frames", "late_frames", "latency_spikes"} == set(PERTURBATIONS)
    clock = SimulatedClock()
    perturbations = make_perturbations(["dropped_frames", "late_frames"], 3)
    source = PerturbedSource(_Counter(clock), perturbations, clock, 3)
    reads = [source.read(0.1) for _ in range(400)]
    assert reads[-1].seq > 400  # some frames were lost
    ages = [clock.now() - f.t_capture for f in reads[-1:]]
    assert all(age >= 0 for age in ages)
    late = 0
    for _ in range(200):
        f = source.read(0.1)
        late += clock.now() - f.t_capture > 0.019
    assert 0 < late < 40

    class Fixed:
        input_size = 8

        def predict(self, batch: np.ndarray) -> np.ndarray:
            return np.array([[0.9, 0.1]], np.float32)

    slow = PerturbedDetector(Fixed(), make_perturbations(["latency_spikes"], 3), clock, 3)
    t0 = clock.now()
    for _ in range(300):
        slow.predict(np.zeros((1, 3, 8, 8), np.float32))
    assert 0.03 <= clock.now() - t0 <= 300 * 0.2  # some spikes, in emulated time
