"""The `local` engine: the calling process (1 worker) or a spawned process pool (`workers` processes).

Each pool process builds its state once (`setup()`, e.g. loading the bundle) and then takes items one at a
time; results come back in item order.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from car.engines import EngineOptions, Progress

_STATE: list[Any] = []  # the worker process's state (one entry)


def _init_worker(setup: Callable[[], Any]) -> None:
    _STATE[:] = [setup()]


def _work_in_worker(work: Callable[[Any, Any], Any], item: Any) -> Any:
    return work(_STATE[0], item)


def map_ordered(
    setup: Callable[[], Any],
    work: Callable[[Any, Any], Any],
    items: Sequence[Any],
    options: EngineOptions,
) -> Iterator[Any]:
    bar = Progress(len(items), options.progress, options.unit)
    try:
        if options.workers <= 1:
            state = setup()
            for item in items:
                yield work(state, item)
                bar.update()
        else:
            spawn = multiprocessing.get_context("spawn")
            with spawn.Pool(options.workers, initializer=_init_worker, initargs=(setup,)) as pool:
                for result in pool.imap(partial(_work_in_worker, work), items):
                    yield result
                    bar.update()
    finally:
        bar.close()
