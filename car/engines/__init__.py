"""Execution engines: where many independent items of work run (simulated runs, drive audits).

One call, `map_items(choice, setup, work, items, options)`, yields `work(state, item)` for every item in
item order, where `state = setup()` is built once per worker (a loaded bundle, a warmed torch). Engines:

| engine | module | workers are |
| --- | --- | --- |
| `local` (default) | `car.engines.local` | the calling process (1 worker) or a spawned process pool |
| `ray` | `car.engines.ray_engine` | a Ray Data actor pool, on a local Ray instance or an existing cluster |

Each engine is one module with `map_ordered(setup, work, items, options) -> Iterator[R]` plus one line in
`ENGINES`; the `--engine` choices are derived from that table. `setup` and `work` must be picklable
(module-level functions or `functools.partial`s of them). The Ray engine is an optional extra (`fleet`),
never imported by `car drive`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from car.errors import CarError

ENGINES: dict[str, str] = {
    "local": "car.engines.local",
    "ray": "car.engines.ray_engine",
}
"""Engine name → module (imported only when chosen)."""

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class EngineError(CarError):
    """A bad engine choice or an engine that cannot start (named with the fix)."""


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """Which engine runs the work and, for Ray, which cluster (`None`: start a local instance)."""

    name: str = "local"
    address: str | None = None


@dataclass(frozen=True, slots=True)
class EngineOptions:
    workers: int = 1
    address: str | None = None
    progress: bool = False
    unit: str = "item"  # the progress bar's unit ("run", "drive")


class Engine(Protocol):
    def map_ordered(
        self,
        setup: Callable[[], Any],
        work: Callable[[Any, Any], Any],
        items: Sequence[Any],
        options: EngineOptions,
    ) -> Iterator[Any]: ...


def engine_module(name: str) -> Engine:
    if name not in ENGINES:
        raise EngineError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
    module: Engine = importlib.import_module(ENGINES[name])
    return module


def map_items(
    choice: EngineChoice,
    setup: Callable[[], S],
    work: Callable[[S, I], R],
    items: Sequence[I],
    options: EngineOptions,
) -> Iterator[R]:
    """`work(setup(), item)` for each item, in item order, on the chosen engine."""
    if options.workers < 1:
        raise EngineError(f"--workers/--jobs {options.workers}: give at least 1")
    if choice.address is not None and choice.name != "ray":
        raise EngineError(f"--address {choice.address}: only --engine ray connects to a cluster")
    opts = EngineOptions(options.workers, choice.address, options.progress, options.unit)
    yield from engine_module(choice.name).map_ordered(setup, work, items, opts)


def _swapped(task: Callable[[I, S], R], state: S, item: I) -> R:
    return task(item, state)


def item_first(task: Callable[[I, S], R]) -> Callable[[S, I], R]:
    """A picklable `work(state, item)` from a `task(item, state)` (e.g. `car sim eval`'s run tasks)."""
    return partial(_swapped, task)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """`--engine local|ray` and `--address auto|ray://HOST:10001` (the worker count is the command's own)."""
    parser.add_argument(
        "--engine",
        choices=tuple(ENGINES),
        default="local",
        help="where the work runs: local (process pool, default) or ray (needs the fleet extra)",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="auto|ray://HOST:PORT",
        help="with --engine ray: an existing Ray cluster (default: start a local Ray instance)",
    )


def engine_from_args(args: argparse.Namespace) -> EngineChoice:
    return EngineChoice(args.engine, args.address)


class Progress:
    """A progress bar over results from all workers (stderr), or nothing."""

    def __init__(self, total: int, enabled: bool, unit: str) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
