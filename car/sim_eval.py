"""`car sim eval`: closed-loop evaluation in the simulated world, as fast as the machine allows.

Each run is a short drive in a random scene (a can on the path at a random distance, a can beside it or far
away, no can, hard negatives such as dark mats and shadows). It uses the very code of `car drive`: the
same `ControlLoop`, `Policy`, preprocessing and ONNX detector, and the same firmware logic (`McuCore`),
reached through the same host session, in-process (`firmware_bridge.loopback.LoopbackLink`) on a simulated
clock: no pty, no sleeping; the firmware watchdog runs in simulated time.

A run ends when the car touches the can (a collision), reaches the end of the track, or has stood still for
`settle_s`. A stop with the can in the path and at most `false_stop_beyond_m` ahead is a stop for the can
(its distance goes into the stopping-distance distribution); any other standstill is a false stop. A run's
scene keeps the track clear of furniture up to `WorldConfig.track_clearance_m` past its end (furniture
only stands beside it, or farther), so a false stop is never a stop in front of a cabinet.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from car import engines
from car.config import CarConfig, LoopConfig, resolve_path
from car.detectors import configured_detector
from car.drivelog import DriveLogWriter
from car.errors import CarError
from car.links import BridgeMotorLink
from car.loop import ControlLoop, NullSink, RecordSink
from car.policy import Policy, PolicyParams
from car.sim_world import make_world
from car.timing import SimulatedClock
from car.types import DriveRecord, FaultKind
from vision.bundle import ModelBundle, load_bundle
from vision.detector import Detector
from vision.sim import SCENE_KINDS, World, WorldConfig, pick_kind
from vision.sources import FrameSource, SimSource

OUTCOMES = ("stopped_for_can", "false_stop", "collision", "reached_end", "timeout")
EVAL_SEEDS = (0, 1)
"""The seeds issue #5's evaluation runs on; `car sim collect` refuses them so no model trains on its test."""


@dataclass(frozen=True, slots=True)
class EvalSettings:
    runs: int = 200
    seed: int = 0
    kinds: tuple[str, ...] = ()  # empty: the simulator's default mix of every kind
    settle_s: float = 1.0
    max_seconds: float = 40.0
    false_stop_beyond_m: float = 0.7  # a stop with the can farther than this (or not in the path) is false
    world: WorldConfig = field(default_factory=WorldConfig)
    perturbations: tuple[str, ...] = ()  # names in vision.sim.perturb.PERTURBATIONS, applied to every run


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run: int
    seed: int
    kind: str
    outcome: str
    stop_distance_m: float | None  # the can's distance when the car came to rest (stopped_for_can)
    can_start_m: float | None
    can_in_path: bool
    frames: int
    sim_seconds: float
    stutters: int  # STOPs while driving that resumed later (brief hesitations)
    faults: int
    ood_faults: int = 0  # ticks with an out_of_distribution fault
    ood_stop: bool = False  # the car came to rest held by an out_of_distribution STOP (since it last drove)
    obstacle_ahead_m: float | None = None  # furniture or wall across the car's width when it came to rest
    impact_speed_mps: float | None = None  # a collision's speed at contact (World.impact_speed_mps)


@dataclass(frozen=True, slots=True)
class EvalReport:
    runs: int
    collisions: int
    false_stops: int
    stopped_for_can: int
    reached_end: int
    timeouts: int
    stop_distance_p50: float | None
    stop_distance_p10: float | None
    stop_distance_p90: float | None
    stop_distance_min: float | None
    stop_distance_p95: float | None
    false_stop_rate: float
    false_stops_at_obstacles: int  # false stops with something solid ahead within false_stop_beyond_m
    impact_speed_max: float | None  # the fastest collision's speed at contact, m/s (None without one)
    ood_stops: int
    perturbations: list[str]
    domain: str
    frames: int
    sim_seconds: float
    wall_seconds: float
    by_kind: dict[str, dict[str, int]]
    bundle: str
    outcomes: tuple[RunOutcome, ...]

    def to_dict(self, with_runs: bool = False) -> dict[str, object]:
        doc = asdict(self)
        if not with_runs:
            doc.pop("outcomes")
        return doc


def run_seed(base: int, index: int) -> int:
    return int(np.random.SeedSequence([base, index]).generate_state(1)[0])


def choose_kind(seed: int, kinds: Sequence[str]) -> str:
    rng = np.random.default_rng([seed, 11])
    if not kinds:
        return pick_kind(rng)
    return kinds[int(rng.integers(len(kinds)))]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Which run: its number in the evaluation (for naming only), its seed and its scene kind.

    A run is a pure function of (bundle, drive config, `EvalSettings` options, seed, kind):
    `car sim eval --run SEED:KIND` repeats any run exactly from these two values."""

    index: int
    seed: int
    kind: str

    @classmethod
    def of(cls, settings: EvalSettings, index: int) -> RunSpec:
        seed = run_seed(settings.seed, index)
        return cls(index, seed, choose_kind(seed, settings.kinds))

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        """`SEED:KIND` as printed in a report or a failure log's name."""
        seed_text, _, kind = text.partition(":")
        try:
            seed = int(seed_text)
        except ValueError:
            raise CarError(f"--run {text!r}: give SEED:KIND, e.g. 1234567:can_path") from None
        check_kinds((kind,))
        return cls(0, seed, kind)

    @property
    def name(self) -> str:
        return f"run{self.index:05d}-seed{self.seed}-{self.kind}"


def can_in_path(world: World) -> bool:
    truth = world.truth()
    return truth.lateral_m is not None and abs(truth.lateral_m) <= world.config.half_path_m


class _RunWatch:
    """Watches one run's records: standstill, stutters; says when the run is over."""

    def __init__(self, world: World, settings: EvalSettings, period: float) -> None:
        self.world = world
        self.settings = settings
        self.period = period
        self.still_s = 0.0
        self.was_driving = False
        self.stutters = 0
        self.faults = 0
        self.ood_faults = 0
        self.ood_since_driving = False
        self.frames = 0
        self.t = 0.0
        self.ended: str | None = None

    def __call__(self, record: DriveRecord) -> str | None:
        self.frames += record.frame_seq is not None
        self.faults += len(record.faults)
        unfamiliar = any(f.kind is FaultKind.OUT_OF_DISTRIBUTION for f in record.faults)
        self.ood_faults += unfamiliar
        self.t += self.period
        stopped = record.decision.is_stop
        # an out-of-distribution STOP since the car last drove: what holds it (policy.ood_hold)
        self.ood_since_driving = stopped and (self.ood_since_driving or unfamiliar)
        if stopped and self.was_driving:
            self.stutters += 1
        self.was_driving = not stopped
        self.still_s = self.still_s + self.period if stopped and self.world.speed_mps <= 0 else 0.0
        if self.world.collided():
            self.ended = "collision"
        elif self.world.reached_end():
            self.ended = "reached_end"
        elif self.still_s >= self.settings.settle_s and self.frames > 3:
            self.ended = "stopped"
        elif self.t >= self.settings.max_seconds:
            self.ended = "timeout"
        return self.ended


class _Tee:
    """Hands each record to several sinks (e.g. `car sim collect`'s and a failure log)."""

    def __init__(self, *sinks: RecordSink) -> None:
        self.sinks = sinks

    def submit(self, record: DriveRecord) -> bool:
        return all([s.submit(record) for s in self.sinks])

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.sinks)


def simulate_run(
    index: int,
    settings: EvalSettings,
    *,
    config: CarConfig,
    detector: Detector,
    bundle: ModelBundle,
    sink: RecordSink | None = None,
) -> RunOutcome:
    """Run `index` of the evaluation `settings` (its seed and kind follow from settings.seed and index)."""
    spec = RunSpec.of(settings, index)
    return simulate_spec(spec, settings, config=config, detector=detector, bundle=bundle, sink=sink)


def simulate_spec(
    spec: RunSpec,
    settings: EvalSettings,
    *,
    config: CarConfig,
    detector: Detector,
    bundle: ModelBundle,
    sink: RecordSink | None = None,
    log_path: Path | None = None,
) -> RunOutcome:
    """One closed-loop run; deterministic for (bundle, config, settings' options, spec.seed, spec.kind).

    `sink` receives every record of the run as the drive log would (frame, ground truth, decision;
    `car sim collect` keeps frames from it); by default the records go nowhere. `log_path` writes the run as
    an ordinary drive log (`car log info`, `car replay`, `car explain` read it).
    """
    from firmware_bridge.loopback import LoopbackLink

    world = make_world(spec.seed, spec.kind, config=settings.world)
    start_distance = world.can_distance()
    in_path = can_in_path(world)
    clock = SimulatedClock()
    link = LoopbackLink(clock=clock.now, ack_timeout_s=config.link.ack_timeout_s)
    link.open()
    link.handshake()
    link.arm()
    motor = BridgeMotorLink(link)
    rate = config.loop.rate_hz if config.loop.rate_hz > 0 else 30.0
    fps = config.source.fps if config.source.fps > 0 else rate
    source: FrameSource = SimSource(
        world,
        lambda: link.motor_fraction * world.config.max_speed_mps,
        fps=fps,
        clock=clock,
        name=f"eval:{spec.seed}:{spec.kind}",
    )
    if settings.perturbations:
        from vision.sim.perturb import PerturbedDetector, PerturbedSource, make_perturbations

        perturbations = make_perturbations(settings.perturbations, spec.seed)
        source = PerturbedSource(source, perturbations, clock, spec.seed)
        detector = PerturbedDetector(detector, perturbations, clock, spec.seed)
    params = PolicyParams.from_config(config.policy, bundle.manifest.threshold)
    loop_config = LoopConfig(**{**asdict(config.loop), "rate_hz": rate, "duration_s": 0.0})
    writer = (
        None if log_path is None else _failure_log(log_path, config, bundle, params.threshold, source.name)
    )
    sinks = [s for s in (sink, writer) if s is not None]
    loop = ControlLoop(
        source=source,
        detector=detector,
        preprocessing=bundle.manifest.preprocessing,
        policy=Policy(params),
        link=motor,
        sink=_Tee(*sinks) if sinks else NullSink(),
        clock=clock,
        config=loop_config,
        drive_speed=config.policy.drive_speed,
    )
    watch = _RunWatch(world, settings, 1.0 / rate)
    summary = None
    try:
        with source:
            summary = loop.run(until=watch)
    finally:
        if writer is not None:
            writer.close(summary)
    link.close()
    ended = watch.ended or "timeout"
    distance = world.can_distance()
    stop_distance = None
    if ended == "stopped":
        blocking = in_path and distance is not None and distance <= settings.false_stop_beyond_m
        ended = "stopped_for_can" if blocking else "false_stop"
        stop_distance = distance if blocking else None
    at_rest = ended in ("false_stop", "stopped_for_can")
    return RunOutcome(
        run=spec.index,
        seed=spec.seed,
        kind=spec.kind,
        outcome=ended,
        stop_distance_m=stop_distance,
        can_start_m=start_distance,
        can_in_path=in_path,
        frames=watch.frames,
        sim_seconds=clock.now(),
        stutters=watch.stutters,
        faults=watch.faults,
        ood_faults=watch.ood_faults,
        ood_stop=at_rest and watch.ood_since_driving,
        obstacle_ahead_m=world.obstacle_ahead() if at_rest else None,
        impact_speed_mps=world.impact_speed_mps,
    )


def _failure_log(
    path: Path, config: CarConfig, bundle: ModelBundle, threshold: float, source: str
) -> DriveLogWriter:
    """A drive log for one simulated run: every record kept (queue as long as any run), frames as PNG."""
    from car.run_drive import drive_meta

    writer = DriveLogWriter(path, drive_meta(config, bundle, threshold, source), queue_size=1_000_000)
    return writer.open()


FAILURES = ("collision", "false_stop", "timeout")
"""Outcomes `--save-failures` writes a drive log for."""


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(
    outcomes: Sequence[RunOutcome], bundle: str, wall_seconds: float, settings: EvalSettings | None = None
) -> EvalReport:
    settings = settings or EvalSettings()
    counts = Counter(o.outcome for o in outcomes)
    distances = [o.stop_distance_m for o in outcomes if o.stop_distance_m is not None]
    by_kind: dict[str, dict[str, int]] = {}
    for o in outcomes:
        by_kind.setdefault(o.kind, dict.fromkeys(OUTCOMES, 0))[o.outcome] += 1
    n = len(outcomes)
    impacts = [o.impact_speed_mps for o in outcomes if o.impact_speed_mps is not None]
    return EvalReport(
        runs=n,
        collisions=counts["collision"],
        false_stops=counts["false_stop"],
        stopped_for_can=counts["stopped_for_can"],
        reached_end=counts["reached_end"],
        timeouts=counts["timeout"],
        stop_distance_p50=_percentile(distances, 50),
        stop_distance_p10=_percentile(distances, 10),
        stop_distance_p90=_percentile(distances, 90),
        stop_distance_min=min(distances) if distances else None,
        stop_distance_p95=_percentile(distances, 95),
        false_stop_rate=counts["false_stop"] / n if n else 0.0,
        false_stops_at_obstacles=sum(
            o.outcome == "false_stop"
            and o.obstacle_ahead_m is not None
            and o.obstacle_ahead_m <= settings.false_stop_beyond_m
            for o in outcomes
        ),
        impact_speed_max=max(impacts) if impacts else None,
        ood_stops=sum(o.ood_stop for o in outcomes),
        perturbations=list(settings.perturbations),
        domain=settings.world.domain,
        frames=sum(o.frames for o in outcomes),
        sim_seconds=sum(o.sim_seconds for o in outcomes),
        wall_seconds=wall_seconds,
        by_kind=dict(sorted(by_kind.items())),
        bundle=bundle,
        outcomes=tuple(outcomes),
    )


# -- running many runs (optionally in worker processes) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every run of one evaluation shares: settings, drive config, the loaded bundle, its detector."""

    settings: EvalSettings
    config: CarConfig
    detector: Detector
    bundle: ModelBundle

    @classmethod
    def load(cls, settings: EvalSettings, config: CarConfig) -> RunContext:
        bundle = load_bundle(resolve_path(config.model.bundle))
        detector = configured_detector(bundle, config)
        return cls(settings, config, detector, bundle)

    def simulate(self, index: int, sink: RecordSink | None = None) -> RunOutcome:
        return self.simulate_spec(RunSpec.of(self.settings, index), sink=sink)

    def simulate_spec(
        self, spec: RunSpec, sink: RecordSink | None = None, log_path: Path | None = None
    ) -> RunOutcome:
        return simulate_spec(
            spec,
            self.settings,
            config=self.config,
            detector=self.detector,
            bundle=self.bundle,
            sink=sink,
            log_path=log_path,
        )


_T = TypeVar("_T")
RunTask = Callable[[int, RunContext], _T]
"""One run's work (a module-level function, or a partial of one, so worker processes can receive it)."""


def _outcome_of(index: int, context: RunContext) -> RunOutcome:
    return context.simulate(index)


def check_kinds(kinds: Sequence[str]) -> None:
    for kind in kinds:
        if kind not in SCENE_KINDS:
            raise CarError(f"--kinds {kind!r}: choose from {', '.join(sorted(SCENE_KINDS))}")


def map_runs(
    task: RunTask[_T],
    settings: EvalSettings,
    config: CarConfig,
    jobs: int = 1,
    progress: bool = False,
    *,
    engine: engines.EngineChoice = engines.EngineChoice(),  # noqa: B008  (frozen)
    first: int = 0,
) -> Iterator[_T]:
    """`task(index, context)` for runs first..settings.runs-1, results in run order whatever `jobs` is.

    With jobs > 1 each worker (a process of the local pool, or a Ray actor with `--engine ray`) loads the
    bundle once and runs whole runs (a run is deterministic for its index, so the results do not depend on
    how runs are spread over workers).
    """
    check_kinds(settings.kinds)
    bar = _progress(settings.runs - first, progress)
    setup, work = partial(RunContext.load, settings, config), engines.item_first(task)
    try:
        for result in engines.map_items(
            engine, setup, work, range(first, settings.runs), engines.EngineOptions(jobs)
        ):
            yield result
            bar.update(1)
    finally:
        bar.close()


def evaluate(
    settings: EvalSettings,
    config: CarConfig,
    jobs: int = 1,
    progress: bool = False,
    *,
    on_outcome: Callable[[RunOutcome], None] | None = None,
    engine: engines.EngineChoice = engines.EngineChoice(),  # noqa: B008  (frozen)
    done: Sequence[RunOutcome] = (),
) -> EvalReport:
    """All runs of `settings`; `on_outcome` sees each as it finishes (in run order). `done`: the outcomes of
    runs 0..len(done)-1 from an earlier, interrupted evaluation of the same settings (see `check_resumable`);
    only the rest are run, and the report covers all."""
    check_kinds(settings.kinds)
    bundle = load_bundle(resolve_path(config.model.bundle))
    t0 = time.monotonic()
    outcomes = list(done)
    runs = map_runs(_outcome_of, settings, config, jobs, progress, engine=engine, first=len(done))
    for outcome in runs:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return summarise(outcomes, bundle.manifest.name, time.monotonic() - t0, settings)


def check_resumable(done: Sequence[RunOutcome], settings: EvalSettings, source: str) -> None:
    """The runs of an earlier evaluation are runs 0..n-1 of these settings (same seed and kinds), else a
    CarError. The rest of a run's inputs (model, config, domain, perturbations) are checked against the
    file's header where it has one (`car.eval_runs.check_header`)."""
    if len(done) > settings.runs:
        raise CarError(f"{source}: already holds {len(done)} runs; --runs {settings.runs} asks for fewer")
    for index, outcome in enumerate(done):
        spec = RunSpec.of(settings, index)
        if (outcome.run, outcome.seed, outcome.kind) != (spec.index, spec.seed, spec.kind):
            raise CarError(
                f"{source}: run {index} there is {outcome.seed}:{outcome.kind} (run {outcome.run}), "
                f"not {spec.seed}:{spec.kind}; resume with the --seed and --kinds it was started with"
            )


def save_failures(
    outcomes: Sequence[RunOutcome], settings: EvalSettings, config: CarConfig, out: Path
) -> list[Path]:
    """Runs again every collision, false stop and timeout (runs are deterministic) with a drive log:
    `out/<outcome>-run<N>-seed<S>-<kind>.sqlite`. Returns the paths written."""
    failing = [o for o in outcomes if o.outcome in FAILURES]
    if not failing:
        return []
    context = RunContext.load(settings, config)
    paths = []
    for o in failing:
        spec = RunSpec(o.run, o.seed, o.kind)
        path = out / f"{o.outcome}-{spec.name}.sqlite"
        again = context.simulate_spec(spec, log_path=path)
        if again.outcome != o.outcome:
            raise CarError(
                f"{spec.name}: ran again as {again.outcome}, not {o.outcome}; the run is not deterministic"
            )
        paths.append(path)
    return paths


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool) -> _NoBar:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="run", file=sys.stderr)  # type: ignore[return-value]


def _m(x: float | None) -> str:
    return "--" if x is None else f"{x:.3f} m"


def format_report(r: EvalReport) -> str:
    lines = [
        f"closed-loop evaluation of {r.bundle}: {r.runs} runs, {r.frames} frames, "
        f"{r.sim_seconds:.0f} s simulated in {r.wall_seconds:.0f} s",
        f"  collisions      {r.collisions}"
        + ("" if r.impact_speed_max is None else f" (fastest at contact {r.impact_speed_max:.2f} m/s)"),
        f"  false stops     {r.false_stops} ({100 * r.false_stop_rate:.1f} %; "
        f"{r.false_stops_at_obstacles} of them with furniture or a wall in the path)",
        f"  stopped for can {r.stopped_for_can}, reached the end {r.reached_end}, timeouts {r.timeouts}",
        f"  stopping distance p10 {_m(r.stop_distance_p10)}, p50 {_m(r.stop_distance_p50)}, "
        f"p90 {_m(r.stop_distance_p90)}, p95 {_m(r.stop_distance_p95)}, min {_m(r.stop_distance_min)}",
        f"  stops on out_of_distribution {r.ood_stops}; world {r.domain}; "
        f"perturbations {', '.join(r.perturbations) or 'none'}",
        "  by scene kind: "
        + ", ".join(
            f"{kind} " + "/".join(f"{k[:4]}={v}" for k, v in counts.items() if v)
            for kind, counts in r.by_kind.items()
        ),
    ]
    return "\n".join(lines)
