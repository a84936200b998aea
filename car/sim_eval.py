"""`car sim eval`: closed-loop evaluation in the simulated world, as fast as the machine allows.

Each run is a short drive in a random scene (a can on the path at a random distance, a can beside it or far
away, no can, hard negatives such as dark mats and shadows). It uses the very code of `car drive`: the
same `ControlLoop`, `Policy`, preprocessing and ONNX detector, and the same firmware logic (`McuCore`),
reached through the same host session, in-process (`firmware_bridge.loopback.LoopbackLink`) on a simulated
clock: no pty, no sleeping; the firmware watchdog runs in simulated time.

A run ends when the car touches the can (a collision), reaches the end of the track, or has stood still for
`settle_s`. A stop with the can in the path and at most `false_stop_beyond_m` ahead is a stop for the can
(its distance goes into the stopping-distance distribution); any other standstill is a false stop.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from car.commands.sim import add_domain_argument
from car.config import CarConfig, LoopConfig, load_config, resolve_path, with_overrides
from car.errors import CarError
from car.links import BridgeMotorLink
from car.loop import ControlLoop, NullSink, RecordSink
from car.policy import Policy, PolicyParams
from car.sim_world import make_world
from car.timing import SimulatedClock
from car.types import DriveRecord
from vision.bundle import ModelBundle, load_bundle
from vision.detector import Detector, build_detector
from vision.sim import SCENE_KINDS, World, WorldConfig, pick_kind
from vision.sources import SimSource

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
    false_stop_rate: float
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


def can_in_path(world: World) -> bool:
    truth = world.truth()
    return truth.lateral_m is not None and abs(truth.lateral_m) <= world.config.half_path_m


class _RunWatch:
    """Watches one run's records: standstill, stutters; says when the run is over."""

    def __init__(self, world: World, motor: BridgeMotorLink, settings: EvalSettings, period: float) -> None:
        self.world = world
        self.settings = settings
        self.period = period
        self.still_s = 0.0
        self.moved = False
        self.was_driving = False
        self.stutters = 0
        self.faults = 0
        self.frames = 0
        self.t = 0.0
        self.ended: str | None = None

    def __call__(self, record: DriveRecord) -> str | None:
        self.frames += record.frame_seq is not None
        self.faults += len(record.faults)
        self.t += self.period
        stopped = record.decision.is_stop
        if stopped and self.was_driving:
            self.stutters += 1
        self.was_driving = not stopped
        self.still_s = self.still_s + self.period if stopped else 0.0
        if self.world.collided():
            self.ended = "collision"
        elif self.world.reached_end():
            self.ended = "reached_end"
        elif self.still_s >= self.settings.settle_s and self.frames > 3:
            self.ended = "stopped"
        elif self.t >= self.settings.max_seconds:
            self.ended = "timeout"
        return self.ended


def simulate_run(
    index: int,
    settings: EvalSettings,
    *,
    config: CarConfig,
    detector: Detector,
    bundle: ModelBundle,
    sink: RecordSink | None = None,
) -> RunOutcome:
    """One closed-loop run; deterministic for (settings.seed, index).

    `sink` receives every record of the run as the drive log would (frame, ground truth, decision;
    `car sim collect` keeps frames from it); by default the records go nowhere.
    """
    from firmware_bridge.loopback import LoopbackLink

    seed = run_seed(settings.seed, index)
    kind = choose_kind(seed, settings.kinds)
    world = make_world(seed, kind, config=settings.world)
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
    source = SimSource(
        world,
        lambda: link.motor_fraction * world.config.max_speed_mps,
        fps=fps,
        clock=clock,
        name=f"eval:{index}",
    )
    params = PolicyParams.from_config(config.policy, bundle.manifest.threshold)
    loop_config = LoopConfig(**{**asdict(config.loop), "rate_hz": rate, "duration_s": 0.0})
    loop = ControlLoop(
        source=source,
        detector=detector,
        preprocessing=bundle.manifest.preprocessing,
        policy=Policy(params),
        link=motor,
        sink=NullSink() if sink is None else sink,
        clock=clock,
        config=loop_config,
        drive_speed=config.policy.drive_speed,
    )
    watch = _RunWatch(world, motor, settings, 1.0 / rate)
    with source:
        loop.run(until=watch)
    link.close()
    ended = watch.ended or "timeout"
    distance = world.can_distance()
    stop_distance = None
    if ended == "stopped":
        blocking = in_path and distance is not None and distance <= settings.false_stop_beyond_m
        ended = "stopped_for_can" if blocking else "false_stop"
        stop_distance = distance if blocking else None
    return RunOutcome(
        run=index,
        seed=seed,
        kind=kind,
        outcome=ended,
        stop_distance_m=stop_distance,
        can_start_m=start_distance,
        can_in_path=in_path,
        frames=watch.frames,
        sim_seconds=clock.now(),
        stutters=watch.stutters,
        faults=watch.faults,
    )


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(outcomes: Sequence[RunOutcome], bundle: str, wall_seconds: float) -> EvalReport:
    counts = Counter(o.outcome for o in outcomes)
    distances = [o.stop_distance_m for o in outcomes if o.stop_distance_m is not None]
    by_kind: dict[str, dict[str, int]] = {}
    for o in outcomes:
        by_kind.setdefault(o.kind, dict.fromkeys(OUTCOMES, 0))[o.outcome] += 1
    n = len(outcomes)
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
        false_stop_rate=counts["false_stop"] / n if n else 0.0,
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
        detector = build_detector(bundle, config.model.runtime, config.model.threads)
        return cls(settings, config, detector, bundle)

    def simulate(self, index: int, sink: RecordSink | None = None) -> RunOutcome:
        return simulate_run(
            index, self.settings, config=self.config, detector=self.detector, bundle=self.bundle, sink=sink
        )


_T = TypeVar("_T")
RunTask = Callable[[int, RunContext], _T]
"""One run's work (a module-level function, or a partial of one, so worker processes can receive it)."""

_WORKER: list[RunContext] = []  # one per worker process


def _init_worker(settings: EvalSettings, config: CarConfig) -> None:
    _WORKER[:] = [RunContext.load(settings, config)]


def _run_task_in_worker(task: RunTask[_T], index: int) -> _T:
    return task(index, _WORKER[0])


def _outcome_of(index: int, context: RunContext) -> RunOutcome:
    return context.simulate(index)


def check_kinds(kinds: Sequence[str]) -> None:
    for kind in kinds:
        if kind not in SCENE_KINDS:
            raise CarError(f"--kinds {kind!r}: choose from {', '.join(sorted(SCENE_KINDS))}")


def map_runs(
    task: RunTask[_T], settings: EvalSettings, config: CarConfig, jobs: int = 1, progress: bool = False
) -> Iterator[_T]:
    """`task(index, context)` for runs 0..settings.runs-1, results in run order whatever `jobs` is.

    With jobs > 1 each worker process loads the bundle once and runs whole runs (a run is deterministic
    for its index, so the results do not depend on how runs are spread over workers).
    """
    check_kinds(settings.kinds)
    indices = range(settings.runs)
    bar = _progress(settings.runs, progress)
    try:
        if jobs <= 1:
            context = RunContext.load(settings, config)
            for i in indices:
                yield task(i, context)
                bar.update(1)
        else:
            from functools import partial

            spawn = multiprocessing.get_context("spawn")
            with spawn.Pool(jobs, initializer=_init_worker, initargs=(settings, config)) as pool:
                for result in pool.imap(partial(_run_task_in_worker, task), indices):
                    yield result
                    bar.update(1)
    finally:
        bar.close()


def evaluate(settings: EvalSettings, config: CarConfig, jobs: int = 1, progress: bool = False) -> EvalReport:
    check_kinds(settings.kinds)
    bundle = load_bundle(resolve_path(config.model.bundle))
    t0 = time.monotonic()
    outcomes = list(map_runs(_outcome_of, settings, config, jobs, progress))
    return summarise(outcomes, bundle.manifest.name, time.monotonic() - t0)


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


# -- the `car sim eval` command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=200, help="number of simulated drives (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes (default 0)")
    parser.add_argument(
        "--model", type=Path, default=None, help="bundle (default: the config's, models/edge-sim)"
    )
    parser.add_argument("--config", type=Path, default=None, help="drive config for policy and loop settings")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override")
    parser.add_argument(
        "--kinds",
        default="",
        help=f"comma-separated scene kinds (default: the mix of {', '.join(SCENE_KINDS)})",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    add_domain_argument(parser)
    parser.add_argument("--runs-out", type=Path, default=None, help="write every run's outcome as JSON lines")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise CarError(f"--runs {args.runs}: give at least 1")
    if args.jobs < 1:
        raise CarError(f"--jobs {args.jobs}: give at least 1")
    config = load_config(args.config)
    overrides = list(args.set)
    if args.model is not None:
        overrides.append(f"model.bundle={args.model}")
    if overrides:
        config = with_overrides(config, overrides)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    settings = EvalSettings(
        runs=args.runs, seed=args.seed, kinds=kinds, world=WorldConfig(domain=args.domain)
    )
    report = evaluate(settings, config, jobs=args.jobs, progress=not args.json)
    if args.runs_out is not None:
        args.runs_out.write_text("".join(json.dumps(asdict(o)) + "\n" for o in report.outcomes))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0


def _m(x: float | None) -> str:
    return "--" if x is None else f"{x:.3f} m"


def format_report(r: EvalReport) -> str:
    lines = [
        f"closed-loop evaluation of {r.bundle}: {r.runs} runs, {r.frames} frames, "
        f"{r.sim_seconds:.0f} s simulated in {r.wall_seconds:.0f} s",
        f"  collisions      {r.collisions}",
        f"  false stops     {r.false_stops} ({100 * r.false_stop_rate:.1f} %)",
        f"  stopped for can {r.stopped_for_can}, reached the end {r.reached_end}, timeouts {r.timeouts}",
        f"  stopping distance p10 {_m(r.stop_distance_p10)}, p50 {_m(r.stop_distance_p50)}, "
        f"p90 {_m(r.stop_distance_p90)}, min {_m(r.stop_distance_min)}",
        "  by scene kind: "
        + ", ".join(
            f"{kind} " + "/".join(f"{k[:4]}={v}" for k, v in counts.items() if v)
            for kind, counts in r.by_kind.items()
        ),
    ]
    return "\n".join(lines)
