"""`car sim collect`: training frames from the states the driving model itself visits (DAgger-style).

A randomly placed dataset (`car sim dataset`) shows each scene once, from its start pose. The car, though,
drives: it sees a dark mat or a shadow from 2 m, then 1 m, then 30 cm, and it is at those close range
views of hard negatives that a network trained on start poses makes its false stops. This command drives
a model bundle through many random scenes in exactly the closed loop of `car sim eval`
(`car.sim_eval.simulate_run`: same world, policy, control loop and in-process firmware on a simulated
clock), and saves the frames the car saw, each labelled by the world's ground truth at that instant
(`vision.sim.world.label_for`, the very function that labels `car sim dataset`'s frames).

Which frames are saved is a `--keep` spec, a comma-separated list of rules; a frame is saved when any rule
keeps it, and the manifest records which rule did (`kept_because`, the first in the spec's order):

- `wrong`      the network's own call (P(STOP) > the policy's threshold) is a mistake the closed-loop
               evaluation counts: a missed STOP, or a STOP where the world says GO, except with the can in
               the path at most `false_stop_beyond_m` (0.7 m) ahead, where `car sim eval` accepts a stop
               as a stop for the can
- `disagree`   the policy's decision differs from the ground truth, whatever the cause: this also counts
               the start-up hysteresis (the first frames of every run are STOP until three confident GO
               frames) and the accepted early stops 0.35-0.7 m before a can
- `error=E`    P(STOP) lies at least E away from the true label (0 GO, 1 STOP), with the same exception
               as `wrong`: near misses that did not flip the call yet
- `every=K`    frames 0, K, 2K, ... of each run: the ordinary states, thinned, since 30 frames a second of
               a car moving 8 mm per frame are near copies of each other
- `all`        every frame

The default, `wrong,error=0.3,every=30`, keeps every mistake, every near miss, and one frame a second of
the rest (about every 25 cm of travel: a dozen views of each scene's approach, including the close-up
views of mats, shadows and dark objects that random placement rarely renders). Why not `disagree`: in 40
runs of the shipped model, 574 decisions disagreed with the truth but only 18 were network mistakes; the
rest were start-up hysteresis and accepted stops just before a can, which, saved as GO, would teach the
next network to stop later for cans. Why so few `every` frames: closed-loop frames are almost all GO (a
car that works stops at the STOP cutoff), so a dense sample would swamp the STOP class of the set it is
trained beside (at `every=4`, 600 runs give ~45 000 GO frames next to a 6 000-frame base set).

The output folder is a dataset folder as `car sim dataset` writes it (`{label}_{uuid}.jpg`, `masks/`,
`manifest.jsonl` with the same keys plus the closed-loop fields of `vision.datasets.ClosedLoopFields`), so
`car train` reads it as it is, alone or beside other folders. Files are written by the main process in run
order, so the folder is the same for the same (model, seed, runs, kinds, keep) whatever `--jobs` is.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from car import engines
from car.config import CarConfig, resolve_path
from car.errors import CarError
from car.policy import PolicyParams
from car.sim_eval import (
    EVAL_SEEDS,
    OUTCOMES,
    EvalSettings,
    RunContext,
    RunOutcome,
    check_kinds,
    map_runs,
)
from car.types import DriveRecord
from vision.bundle import load_bundle
from vision.datasets import ClosedLoopFields
from vision.frame import GroundTruth
from vision.labels import GO, STOP, label_name
from vision.sim import SCENE_KINDS, WorldConfig
from vision.sim.dataset import FrameFolderWriter, frame_stem, random_uuid

DEFAULT_KEEP = "wrong,error=0.3,every=30"


# -- what the car saw, and which of it to keep ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeenFrame:
    """One frame of a run as the keep rules judge it: its truth and what the model made of it."""

    run: int
    frame: int
    truth_label: int
    decision_label: int
    p_stop: float | None
    threshold: float
    stop_accepted: bool = False
    """The can is in the path and at most `EvalSettings.false_stop_beyond_m` ahead: the evaluation counts
    a stop here as a stop for the can, so a STOP on such a GO frame is no false stop."""

    @property
    def disagrees(self) -> bool:
        """The policy's decision is not the ground truth (hysteresis and fault STOPs included)."""
        return self.decision_label != self.truth_label

    @property
    def network_wrong(self) -> bool:
        """The network alone (P(STOP) > threshold means STOP, as the policy reads it) is not the truth."""
        if self.p_stop is None:
            return False
        return (self.p_stop > self.threshold) != (self.truth_label == STOP)

    @property
    def network_mistake(self) -> bool:
        """The network's call is a mistake the closed-loop evaluation counts: a missed STOP, or a STOP
        where the world says GO outside the accepted stopping zone before a can in the path."""
        return self.network_wrong and not (self.truth_label == GO and self.stop_accepted)

    @property
    def error(self) -> float | None:
        """How far P(STOP) lies from the true label (0 for GO, 1 for STOP); None without an inference.

        0 for a GO frame in the accepted stopping zone: there, any P(STOP) is fine."""
        if self.p_stop is None:
            return None
        if self.truth_label == GO and self.stop_accepted:
            return 0.0
        return abs(self.p_stop - self.truth_label)


class KeepRule(Protocol):
    """One reason to save a frame."""

    @property
    def name(self) -> str: ...

    def keeps(self, frame: SeenFrame) -> bool: ...

    def spec(self) -> str:
        """The rule as written in a `--keep` spec."""
        ...


@dataclass(frozen=True, slots=True)
class KeepMistakes:
    name: str = "wrong"

    def keeps(self, frame: SeenFrame) -> bool:
        return frame.network_mistake

    def spec(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class KeepDisagreements:
    name: str = "disagree"

    def keeps(self, frame: SeenFrame) -> bool:
        return frame.disagrees

    def spec(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class KeepLargeErrors:
    min_error: float
    name: str = "error"

    def keeps(self, frame: SeenFrame) -> bool:
        error = frame.error
        return error is not None and error >= self.min_error

    def spec(self) -> str:
        return f"{self.name}={self.min_error:g}"


@dataclass(frozen=True, slots=True)
class KeepEveryKth:
    k: int
    name: str = "every"

    def keeps(self, frame: SeenFrame) -> bool:
        return frame.frame % self.k == 0

    def spec(self) -> str:
        return f"{self.name}={self.k}"


@dataclass(frozen=True, slots=True)
class KeepAll:
    name: str = "all"

    def keeps(self, frame: SeenFrame) -> bool:
        return True

    def spec(self) -> str:
        return self.name


def _no_value(rule: KeepRule) -> Callable[[str | None], KeepRule]:
    def build(value: str | None) -> KeepRule:
        if value is not None:
            raise ValueError(f"{rule.name} takes no value")
        return rule

    return build


def _every(value: str | None) -> KeepRule:
    try:
        k = int(value or "")
    except ValueError:
        raise ValueError("every needs a whole number of frames, e.g. every=8") from None
    if k < 1:
        raise ValueError(f"every={k}: K must be at least 1")
    return KeepEveryKth(k)


def _error(value: str | None) -> KeepRule:
    try:
        e = float(value or "")
    except ValueError:
        raise ValueError("error needs a number between 0 and 1, e.g. error=0.3") from None
    if not 0.0 < e < 1.0:
        raise ValueError(f"error={value}: E must lie strictly between 0 and 1")
    return KeepLargeErrors(e)


KEEP_RULES: Mapping[str, Callable[[str | None], KeepRule]] = {
    "wrong": _no_value(KeepMistakes()),
    "disagree": _no_value(KeepDisagreements()),
    "error": _error,
    "every": _every,
    "all": _no_value(KeepAll()),
}
"""`--keep` rule names and how each is built from its `=value` (None when the rule is written bare)."""


@dataclass(frozen=True, slots=True)
class KeepSpec:
    """The `--keep` rules: a frame is kept when any rule keeps it."""

    rules: tuple[KeepRule, ...]

    def why_kept(self, frame: SeenFrame) -> str | None:
        """The name of the first rule that keeps `frame`, or None when none does."""
        return next((rule.name for rule in self.rules if rule.keeps(frame)), None)

    def spec(self) -> str:
        return ",".join(rule.spec() for rule in self.rules)


def parse_keep(text: str) -> KeepSpec:
    """`disagree,every=8` → KeepSpec. A bad spec is a CarError naming the part and what is allowed."""
    rules: list[KeepRule] = []
    allowed = "wrong, disagree, error=E (0<E<1), every=K (K>=1), all"
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, has_value, value = part.partition("=")
        build = KEEP_RULES.get(name.strip())
        if build is None:
            raise CarError(f"--keep {text!r}: unknown rule {name.strip()!r}; use a comma list of {allowed}")
        try:
            rule = build(value.strip() if has_value else None)
        except ValueError as exc:
            raise CarError(f"--keep {text!r}: {exc}; use a comma list of {allowed}") from None
        if any(existing.name == rule.name for existing in rules):
            raise CarError(f"--keep {text!r}: {rule.name} is given twice; give each rule once")
        rules.append(rule)
    if not rules:
        raise CarError(f"--keep {text!r}: no rule given; use a comma list of {allowed}")
    return KeepSpec(tuple(rules))


# -- one run: the closed loop with a sink that keeps frames --------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeptFrame:
    seen: SeenFrame
    rgb: np.ndarray
    truth: GroundTruth
    reason: str
    """The policy's reason for its decision."""
    kept_because: str


@dataclass(frozen=True, slots=True)
class RunCollection:
    """What one run saw and kept (sent back from a worker process whole, written by the main process)."""

    outcome: RunOutcome
    kept: tuple[KeptFrame, ...]
    seen_by_label: tuple[int, int]
    disagreements: int
    network_mistakes: int

    @property
    def seen(self) -> int:
        return sum(self.seen_by_label)


@dataclass(frozen=True, slots=True)
class StopZone:
    """Where the closed-loop evaluation accepts a stop as a stop for the can: the can in the path (its
    centre within `half_path_m` of the centre line) and at most `beyond_m` ahead (car.sim_eval's rule)."""

    half_path_m: float
    beyond_m: float

    @classmethod
    def of(cls, settings: EvalSettings) -> StopZone:
        return cls(settings.world.half_path_m, settings.false_stop_beyond_m)

    def contains(self, truth: GroundTruth) -> bool:
        if truth.distance_m is None or truth.lateral_m is None:
            return False
        return abs(truth.lateral_m) <= self.half_path_m and truth.distance_m <= self.beyond_m


class FrameCollector:
    """A `car.loop.RecordSink` for one run: judges every frame record by the keep spec, holds the kept."""

    healthy = True

    def __init__(self, run: int, keep: KeepSpec, threshold: float, stop_zone: StopZone) -> None:
        self.run = run
        self.keep = keep
        self.threshold = threshold
        self.stop_zone = stop_zone
        self.kept: list[KeptFrame] = []
        self.seen_by_label: Counter[int] = Counter()
        self.disagreements = 0
        self.network_mistakes = 0

    def submit(self, record: DriveRecord) -> bool:
        if record.rgb is None or record.truth is None or record.frame_seq is None:
            return True  # a tick without a frame (the final STOP): nothing to learn from
        probs = record.decision.probs
        seen = SeenFrame(
            run=self.run,
            frame=record.frame_seq,
            truth_label=record.truth.label,
            decision_label=record.decision.label,
            p_stop=None if probs is None else probs.stop,
            threshold=self.threshold,
            stop_accepted=self.stop_zone.contains(record.truth),
        )
        self.seen_by_label[seen.truth_label] += 1
        self.disagreements += seen.disagrees
        self.network_mistakes += seen.network_mistake
        why = self.keep.why_kept(seen)
        if why is not None:
            self.kept.append(KeptFrame(seen, record.rgb, record.truth, record.decision.reason.value, why))
        return True

    def collection(self, outcome: RunOutcome) -> RunCollection:
        return RunCollection(
            outcome=outcome,
            kept=tuple(self.kept),
            seen_by_label=(self.seen_by_label[GO], self.seen_by_label[STOP]),
            disagreements=self.disagreements,
            network_mistakes=self.network_mistakes,
        )


def policy_threshold(context: RunContext) -> float:
    """The threshold the run's policy uses (the config's, else the bundle manifest's)."""
    return PolicyParams.from_config(context.config.policy, context.bundle.manifest.threshold).threshold


def collect_run(keep: KeepSpec, index: int, context: RunContext) -> RunCollection:
    """Run `index` of the closed-loop evaluation, keeping frames by `keep`."""
    collector = FrameCollector(index, keep, policy_threshold(context), StopZone.of(context.settings))
    outcome = context.simulate(index, sink=collector)
    return collector.collection(outcome)


# -- many runs into one folder -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CollectSettings:
    out: Path
    runs: int
    seed: int
    kinds: tuple[str, ...] = ()
    keep: KeepSpec = field(default_factory=lambda: parse_keep(DEFAULT_KEEP))
    jpeg_quality: int = 92
    world: WorldConfig = field(default_factory=WorldConfig)
    perturbations: tuple[str, ...] = ()  # the frames saved are the perturbed frames the network saw

    def validate(self) -> None:
        if self.runs < 1:
            raise CarError(f"--runs {self.runs}: give at least 1")
        if self.seed in EVAL_SEEDS:
            raise CarError(
                f"--seed {self.seed}: an evaluation seed of `car sim eval` (seeds "
                f"{', '.join(map(str, EVAL_SEEDS))}); collecting on it trains on the test scenes, choose "
                "another (e.g. 10)"
            )
        check_kinds(self.kinds)  # --jpeg-quality is checked by the folder writer, as for `car sim dataset`

    def eval_settings(self) -> EvalSettings:
        return EvalSettings(
            runs=self.runs,
            seed=self.seed,
            kinds=self.kinds,
            world=self.world,
            perturbations=self.perturbations,
        )


@dataclass(frozen=True, slots=True)
class KindCounts:
    """Per scene kind: runs, frames seen, frames saved (by label), decisions that disagreed with the truth."""

    runs: int = 0
    seen: int = 0
    saved_go: int = 0
    saved_stop: int = 0
    disagreements: int = 0
    mistakes: int = 0

    @property
    def saved(self) -> int:
        return self.saved_go + self.saved_stop

    def plus(self, run: RunCollection) -> KindCounts:
        stop = sum(f.truth.label == STOP for f in run.kept)
        return KindCounts(
            runs=self.runs + 1,
            seen=self.seen + run.seen,
            saved_go=self.saved_go + len(run.kept) - stop,
            saved_stop=self.saved_stop + stop,
            disagreements=self.disagreements + run.disagreements,
            mistakes=self.mistakes + run.network_mistakes,
        )


@dataclass(frozen=True, slots=True)
class CollectSummary:
    out: Path
    bundle: str
    keep: str
    runs: int
    seed: int
    frames_seen: int
    seen_go: int
    seen_stop: int
    saved_go: int
    saved_stop: int
    disagreements: int
    """Frames whose policy decision differed from the ground truth."""
    network_mistakes: int
    """Frames the network alone called wrong at the policy's threshold (see `SeenFrame.network_mistake`)."""
    saved_because: Mapping[str, int]
    outcomes: Mapping[str, int]
    by_kind: Mapping[str, KindCounts]
    sim_seconds: float
    wall_seconds: float
    perturbations: tuple[str, ...] = ()

    @property
    def saved(self) -> int:
        return self.saved_go + self.saved_stop

    def to_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "bundle": self.bundle,
            "keep": self.keep,
            "runs": self.runs,
            "seed": self.seed,
            "perturbations": list(self.perturbations),
            "frames_seen": self.frames_seen,
            "seen": {"go": self.seen_go, "stop": self.seen_stop},
            "saved": self.saved,
            "saved_by_label": {"go": self.saved_go, "stop": self.saved_stop},
            "disagreements": self.disagreements,
            "network_mistakes": self.network_mistakes,
            "saved_because": dict(self.saved_because),
            "outcomes": dict(self.outcomes),
            "by_kind": {
                kind: {
                    "runs": c.runs,
                    "seen": c.seen,
                    "saved": c.saved,
                    "saved_go": c.saved_go,
                    "saved_stop": c.saved_stop,
                    "disagreements": c.disagreements,
                    "network_mistakes": c.mistakes,
                }
                for kind, c in self.by_kind.items()
            },
            "sim_seconds": round(self.sim_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }

    def format(self) -> str:
        pct = 100 * self.saved / max(self.frames_seen, 1)
        lines = [
            f"collected {self.saved} of {self.frames_seen} frames ({pct:.1f} %) from {self.runs} closed-loop "
            f"runs of {self.bundle} (seed {self.seed}, keep {self.keep}"
            + (f", perturbed: {','.join(self.perturbations)}" if self.perturbations else "")
            + f") into {self.out} in "
            f"{self.wall_seconds:.0f} s ({self.sim_seconds:.0f} s simulated)",
            f"  saved: {label_name(GO)} {self.saved_go}, {label_name(STOP)} {self.saved_stop}; because "
            + ", ".join(f"{name} {n}" for name, n in self.saved_because.items()),
            f"  seen: {label_name(GO)} {self.seen_go}, {label_name(STOP)} {self.seen_stop}; decisions that "
            f"disagreed with the truth {self.disagreements}, network mistakes {self.network_mistakes}",
            "  run outcomes: " + ", ".join(f"{name} {n}" for name, n in self.outcomes.items() if n),
            f"  {'scene kind':<18} {'runs':>5} {'seen':>7} {'saved':>6} {'GO':>6} {'STOP':>6} "
            f"{'disagree':>9} {'mistakes':>9}",
        ]
        for kind, c in self.by_kind.items():
            lines.append(
                f"  {kind:<18} {c.runs:>5} {c.seen:>7} {c.saved:>6} {c.saved_go:>6} {c.saved_stop:>6} "
                f"{c.disagreements:>9} {c.mistakes:>9}"
            )
        return "\n".join(lines)


def _closed_loop_fields(frame: KeptFrame, outcome: RunOutcome, model: str) -> ClosedLoopFields:
    p_stop = frame.seen.p_stop
    return ClosedLoopFields(
        run=frame.seen.run,
        run_seed=outcome.seed,
        frame=frame.seen.frame,
        p_stop=None if p_stop is None else round(p_stop, 6),
        decision=label_name(frame.seen.decision_label),
        reason=frame.reason,
        outcome=outcome.outcome,
        kept_because=frame.kept_because,
        model=model,
    )


def frame_file_stem(seed: int, frame: KeptFrame) -> str:
    """`{label}_{uuid}`, the uuid drawn from (seed, run, frame): the same names for the same collection."""
    rng = np.random.default_rng([seed, frame.seen.run, frame.seen.frame])
    return frame_stem(frame.truth.label, random_uuid(rng))


def collect(
    settings: CollectSettings,
    config: CarConfig,
    jobs: int = 1,
    progress: bool = False,
    engine: engines.EngineChoice = engines.EngineChoice(),  # noqa: B008  (frozen)
) -> CollectSummary:
    """Drive `config.model.bundle` through `settings.runs` scenes; write the kept frames to `settings.out`."""
    settings.validate()
    if jobs < 1:
        raise CarError(f"--jobs {jobs}: give at least 1")
    bundle = load_bundle(resolve_path(config.model.bundle))  # a missing or damaged bundle fails here, first
    model = bundle.manifest.name
    started = time.monotonic()
    by_kind: dict[str, KindCounts] = {}
    outcomes: Counter[str] = Counter()
    because: Counter[str] = Counter()
    seen_go = seen_stop = disagreements = network_mistakes = 0
    sim_seconds = 0.0
    task = partial(collect_run, settings.keep)
    with FrameFolderWriter(settings.out, settings.jpeg_quality) as writer:
        for run in map_runs(task, settings.eval_settings(), config, jobs, progress, engine=engine):
            for frame in run.kept:
                writer.write(
                    frame_file_stem(settings.seed, frame),
                    frame.rgb,
                    frame.truth,
                    seed=settings.seed,
                    index=writer.written,
                    closed_loop=_closed_loop_fields(frame, run.outcome, model),
                )
                because[frame.kept_because] += 1
            kind = run.outcome.kind
            by_kind[kind] = by_kind.get(kind, KindCounts()).plus(run)
            outcomes[run.outcome.outcome] += 1
            seen_go += run.seen_by_label[0]
            seen_stop += run.seen_by_label[1]
            disagreements += run.disagreements
            network_mistakes += run.network_mistakes
            sim_seconds += run.outcome.sim_seconds
    return CollectSummary(
        out=settings.out,
        bundle=model,
        keep=settings.keep.spec(),
        runs=settings.runs,
        seed=settings.seed,
        frames_seen=seen_go + seen_stop,
        seen_go=seen_go,
        seen_stop=seen_stop,
        saved_go=writer.labels[GO],
        saved_stop=writer.labels[STOP],
        disagreements=disagreements,
        network_mistakes=network_mistakes,
        saved_because={rule.name: because[rule.name] for rule in settings.keep.rules},
        outcomes={name: outcomes[name] for name in OUTCOMES},
        by_kind={k: by_kind[k] for k in SCENE_KINDS if k in by_kind},
        sim_seconds=sim_seconds,
        wall_seconds=time.monotonic() - started,
        perturbations=settings.perturbations,
    )
