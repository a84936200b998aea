"""The `ray` engine: a Ray Data `map_batches` over the items with a fixed actor pool of `workers` actors.

Each actor runs `setup()` once (loads the bundle, warms torch) and then takes one item per call
(`batch_size=1`, one block per item, one call in flight per actor, so a slow item never holds others
queued behind it). Ray Data restarts a dead actor and retries its item (`max_restarts=-1` and
`max_task_retries=-1` are Ray Data's defaults for actor pools, ray/data/_internal/execution/operators/
actor_pool_map_operator.py; passing them again is deprecated); results already delivered are kept.
Results are yielded in item order.

Without `address` a local Ray instance is started (`ray.init(num_cpus=max(workers, CPUs))`, no dashboard,
workers at normal priority: `LOCAL_WORKER_NICENESS`);
`address="auto"` joins the cluster this machine belongs to (`ray start --head` / `ray start --address`),
`ray://HOST:10001` connects a Ray client. A Ray instance already started in this process is reused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from car.engines import EngineError, EngineOptions, Progress

ACTOR_ENV = {"MALLOC_ARENA_MAX": "1"}
"""The actors' environment. Ray Data runs an actor's work in a pool thread, not the main thread; glibc gives
such a thread its own malloc arena, whose heaps (64 MB at most) are unmapped whenever they empty, so large
tensors freed and allocated again page-fault afresh (measured: a drive's audit took 15 % more CPU in a Ray
Data actor than in a plain process). One arena gives the work the main thread's allocator, the same as on
the local engine."""


LOCAL_WORKER_NICENESS = "0"
"""Ray starts its workers at nice 15 by default. On a shared machine (a laptop, a 2-core test box with an
evaluation running beside it) a nice-15 actor gets a few per cent of a core, and an actor restarted after a
crash took minutes to load torch again (a hung fleet audit in the killed-worker test). The local engine's
processes run at normal priority; so do the local Ray instance's workers (Ray reads `RAY_worker_niceness`
from the environment its raylet inherits). A cluster that `address` joins keeps its own settings."""


def connect(address: str | None, workers: int) -> None:
    """Start or join Ray once per process."""
    try:
        import ray
    except ModuleNotFoundError:
        raise EngineError(
            "--engine ray needs Ray: pip install '.[fleet]' (never needed on the car)"
        ) from None
    if ray.is_initialized():
        return
    common: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": True}
    if address is None:
        os.environ.setdefault("RAY_worker_niceness", LOCAL_WORKER_NICENESS)
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), **common)
    else:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError) as exc:
            raise EngineError(
                f"--address {address}: no Ray cluster answered ({exc}); start one with `ray start --head`"
            ) from None


def _actor_class(setup: Callable[[], Any], work: Callable[[Any, Any], Any]) -> type:
    """The pool's actor class, with `setup` and `work` built in (shipped with the class, not as constructor
    arguments in the object store, so Ray can always restart a dead actor)."""

    class FleetWorker:
        def __init__(self) -> None:
            self.state = setup()

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            import cloudpickle

            results = [cloudpickle.dumps(work(self.state, cloudpickle.loads(b))) for b in batch["item"]]
            return {"index": batch["index"], "result": np.array(results, dtype=object)}

    return FleetWorker


def _quiet_data() -> None:
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def map_ordered(
    setup: Callable[[], Any],
    work: Callable[[Any, Any], Any],
    items: Sequence[Any],
    options: EngineOptions,
) -> Iterator[Any]:
    if not items:
        return
    connect(options.address, options.workers)
    import cloudpickle
    import ray.data

    _quiet_data()
    rows = [{"index": i, "item": cloudpickle.dumps(item)} for i, item in enumerate(items)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        _actor_class(setup, work),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.workers, max_tasks_in_flight_per_actor=1),
        num_cpus=1,
        runtime_env={"env_vars": dict(ACTOR_ENV)},
    )
    bar = Progress(len(items), options.progress, options.unit)
    waiting: dict[int, Any] = {}
    next_index = 0
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for index, blob in zip(batch["index"], batch["result"], strict=True):
                waiting[int(index)] = cloudpickle.loads(blob)
                bar.update()
            while next_index in waiting:
                yield waiting.pop(next_index)
                next_index += 1
    finally:
        bar.close()
    if next_index != len(items):
        raise EngineError(f"Ray returned {next_index} of {len(items)} results; see the Ray logs")
