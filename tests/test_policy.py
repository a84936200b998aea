"""The policy: threshold, hysteresis back to GO, every fault and every bad probability means STOP."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car.config import PolicyConfig
from car.errors import CarError
from car.policy import Policy, PolicyParams
from car.types import Fault, FaultKind, Probabilities, Reason
from vision.labels import GO, STOP

PARAMS = PolicyParams(threshold=0.5, go_frames=3, go_margin=0.1)
GO_P = Probabilities(0.9, 0.1)
UNSURE_P = Probabilities(0.6, 0.45)
STOP_P = Probabilities(0.1, 0.9)


def test_starts_stopped_and_needs_n_confident_go_frames() -> None:
    policy = Policy(PARAMS)
    labels = [policy.decide(GO_P).label for _ in range(4)]
    assert labels == [STOP, STOP, GO, GO]


def test_stop_probability_above_threshold_stops_at_once() -> None:
    policy = Policy(PARAMS)
    for _ in range(3):
        policy.decide(GO_P)
    d = policy.decide(Probabilities(0.4, 0.5000001))
    assert d.label == STOP and d.reason is Reason.STOP_PROBABILITY
    # exactly at the threshold is not above it
    policy2 = Policy(PARAMS)
    for _ in range(3):
        policy2.decide(GO_P)
    assert policy2.decide(Probabilities(0.5, 0.5)).label == GO


def test_unsure_frames_hold_go_but_do_not_count_towards_resuming() -> None:
    policy = Policy(PARAMS)
    for _ in range(3):
        policy.decide(GO_P)
    held = policy.decide(UNSURE_P)
    assert held.label == GO and held.reason is Reason.GO_HOLD
    policy.decide(STOP_P)
    seq = [policy.decide(p) for p in (GO_P, GO_P, UNSURE_P, GO_P, GO_P, GO_P)]
    assert [d.label for d in seq] == [STOP, STOP, STOP, STOP, STOP, GO]
    assert [d.go_streak for d in seq] == [1, 2, 0, 1, 2, 3]


@pytest.mark.parametrize("kind", list(FaultKind))
def test_every_fault_stops_and_resets_the_streak(kind: FaultKind) -> None:
    policy = Policy(PARAMS)
    for _ in range(3):
        policy.decide(GO_P)
    d = policy.decide(GO_P, [Fault(kind, "injected")])
    assert d.label == STOP and d.reason is Reason.FAULT
    assert policy.decide(GO_P).label == STOP  # hysteresis starts again


@pytest.mark.parametrize("bad", [math.nan, math.inf, -0.1, 1.5])
def test_bad_probabilities_stop(bad: float) -> None:
    policy = Policy(PARAMS)
    for _ in range(3):
        policy.decide(GO_P)
    assert policy.decide(Probabilities(0.9, bad)).label == STOP
    assert policy.decide(Probabilities(bad, 0.1)).label == STOP
    assert policy.decide(None).label == STOP


def test_threshold_comes_from_the_manifest_unless_configured() -> None:
    assert PolicyParams.from_config(PolicyConfig(), 0.7).threshold == 0.7
    assert PolicyParams.from_config(PolicyConfig(threshold=0.4), 0.7).threshold == 0.4
    with pytest.raises(CarError, match="go_margin"):
        PolicyParams.from_config(PolicyConfig(go_margin=0.5), 0.5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=60))
def test_never_go_above_threshold_or_with_a_fault(steps: list[tuple[float, bool]]) -> None:
    policy = Policy(PARAMS)
    for p_stop, fault in steps:
        faults = [Fault(FaultKind.STALE_FRAME)] if fault else []
        d = policy.decide(Probabilities(1 - p_stop, p_stop), faults)
        if fault or p_stop > PARAMS.threshold:
            assert d.label == STOP
        if d.label == GO:
            assert d.go_streak >= 0 and not fault
