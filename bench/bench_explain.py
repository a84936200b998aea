"""DeepSHAP speed, fairly: shap.DeepExplainer, Captum's DeepLiftShap and the engine, side by side.

Per network: the same weights (seeded; timing does not need training), the same background frames and
explained frames (the simulated world's), both outputs, one frame at a time as published. Fairness:

- one process setting for all: the engine's allocator setting (`keep_freed_memory()`, a process-wide
  mallopt) is applied before anything is timed, so shap and Captum run with it too; one torch thread count;
- one untimed warm-up call of every method first (one-time work such as shap's hooks or the engine's cached
  reference patches is not a per-frame cost), then interleaved repeats in both orders (shap, Captum,
  engine; then engine, Captum, shap; …), each on its own frame; wall and CPU seconds per frame are the
  means over the repeats;
- shap runs on the network itself when it can (seed, edge) and on an equivalent rewritten copy when it
  cannot (ResNet, VGG: `explain/deepshap_reference.py`); Captum on that copy with a Clone between adjacent
  nonlinear modules (Captum issue #1104);
- the multiply-add floor: the CPU time torch takes for a forward pass over as many rows as the engine runs
  backward (frames × outputs × background = 200), the same multiply-adds as those rows' input gradients.

Also prints max |Δ| against shap and the additivity error. Options (`python -m bench.bench_explain -h`) or,
under `python -m bench explain`, the environment: BENCH_EXPLAIN_ARCHS (default seed,edge,resnet18,vgg11),
BENCH_EXPLAIN_SIZE (default 224), BENCH_EXPLAIN_BACKGROUND (100), BENCH_EXPLAIN_REPEATS (2),
BENCH_EXPLAIN_CAPTUM (1), BENCH_EXPLAIN_THREADS (default: torch's). On a machine busy with other jobs use one
thread: two OpenMP threads then spend most of their CPU time waiting for each other.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TORCHVISION = ("resnet18", "resnet34", "vgg11", "vgg16", "mobilenet_v2", "mobilenet_v3_small", "alexnet")


@dataclass(frozen=True)
class Options:
    archs: tuple[str, ...] = ("seed", "edge", "resnet18", "vgg11")
    size: int = 224
    background: int = 100
    repeats: int = 2
    captum: bool = True


DEFAULT = Options()


def scene_inputs(count: int, seed: int, size: int) -> np.ndarray:
    """Normalised network inputs of simulated-world frames (ImageNet mean/std, as the bundles use)."""
    from explain.background import simulated_frames
    from vision.preprocess import Preprocessing, to_network_input

    return to_network_input(simulated_frames(count, seed, size), Preprocessing(input_size=size))


def build(arch: str) -> object:
    import torch
    import torchvision

    from vision.networks import build_network

    torch.manual_seed(0)
    if arch in TORCHVISION:
        return getattr(torchvision.models, arch)(weights=None, num_classes=2).eval()
    return build_network(arch).eval()


def macs_per_row(model: object, example: object) -> int:
    """Multiply-adds of one forward row (convolutions and linear layers)."""
    import torch
    from torch import nn

    assert isinstance(model, nn.Module) and isinstance(example, torch.Tensor)
    total = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
            total += out[0].numel() * k
        elif isinstance(m, nn.Linear):
            total += m.in_features * m.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(example[:1])
    for h in handles:
        h.remove()
    return total


def floor_cpu_s(model: object, example: object, rows: int) -> float:
    """CPU seconds of a forward pass over `rows` rows (in chunks of ≤ 25): the multiply-add floor."""
    import torch
    from torch import nn

    assert isinstance(model, nn.Module) and isinstance(example, torch.Tensor)
    chunk = min(25, rows)
    batch = example[:1].expand(chunk, *example.shape[1:]).contiguous()
    with torch.inference_mode():
        model(batch)  # warm-up
        c0 = time.process_time()
        for _ in range(rows // chunk):
            model(batch)
    return (time.process_time() - c0) * rows / (chunk * (rows // chunk))


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _bench_arch(arch: str, options: Options) -> dict[str, float]:
    import shap
    import torch

    from explain.deepshap import DeepShapEngine
    from explain.deepshap_reference import rewritten_copy, shap_rules, with_clones

    model = build(arch)
    assert isinstance(model, torch.nn.Module)
    size = options.size if arch in TORCHVISION else 224  # seed and edge have a fixed 224×224 head
    background = torch.from_numpy(scene_inputs(options.background, seed=1, size=size))
    frames = scene_inputs(options.repeats + 1, seed=2, size=size)  # the last one warms every method up
    t0 = time.perf_counter()
    engine = DeepShapEngine(model, background)
    setup_s = time.perf_counter() - t0
    rewritten = not engine.is_chain
    shap_model = rewritten_copy(model) if rewritten else model
    explainer = shap.DeepExplainer(shap_model, background)

    def by_shap(i: int) -> np.ndarray:
        with shap_rules():
            v = explainer.shap_values(torch.from_numpy(frames[i : i + 1]), check_additivity=False)
        return np.asarray(v).transpose(0, 4, 1, 2, 3)

    def by_engine(i: int) -> np.ndarray:
        return engine.explain(frames[i : i + 1]).values

    methods: dict[str, Callable[[int], np.ndarray]] = {"shap": by_shap, "ours": by_engine}
    if options.captum:
        from captum.attr import DeepLiftShap

        dls = DeepLiftShap(with_clones(model))

        def by_captum(i: int) -> np.ndarray:
            x = torch.from_numpy(frames[i : i + 1])
            per = [dls.attribute(x, baselines=background, target=k).detach().numpy() for k in range(2)]
            return np.stack(per, axis=1)

        methods["captum"] = by_captum
    wall: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    values: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for method in methods.values():  # untimed: one-time work (hooks, caches, first touch of memory)
        method(options.repeats)
    for r in range(options.repeats):
        order = list(methods) if r % 2 == 0 else list(reversed(methods))
        for name in order:
            v, w, c = _timed(lambda name=name, r=r: methods[name](r))  # type: ignore[misc]
            wall[name].append(w)
            cpu[name].append(c)
            values[name].append(v)
    ref = np.concatenate(values["shap"])
    ours = np.concatenate(values["ours"])
    additivity = float(engine.explain(frames[: options.repeats]).additivity_error().max())
    rows = 2 * options.background
    floor = floor_cpu_s(model, background, rows)
    row: dict[str, float] = {
        "size": float(size),
        "background": float(options.background),
        "repeats": float(options.repeats),
        "shap_on_rewritten_copy": float(rewritten),
        "ours_setup_s": setup_s,
        "gmacs_per_row": macs_per_row(model, background) / 1e9,
        "floor_cpu_s": floor,
        "max_abs_diff": float(np.abs(ours - ref).max()),
        "max_abs_value": float(np.abs(ref).max()),
        "additivity_error": additivity,
    }
    for name in methods:
        row[f"{name}_s_per_frame"] = statistics.fmean(wall[name])
        row[f"{name}_cpu_s_per_frame"] = statistics.fmean(cpu[name])
    if options.captum:
        row["captum_max_abs_diff"] = float(np.abs(np.concatenate(values["captum"]) - ref).max())
    row["speedup"] = row["shap_s_per_frame"] / row["ours_s_per_frame"]
    row["speedup_cpu"] = row["shap_cpu_s_per_frame"] / row["ours_cpu_s_per_frame"]
    row["ours_cpu_over_floor"] = row["ours_cpu_s_per_frame"] / floor
    _print_row(arch, row, options)
    return row


def _print_row(arch: str, row: dict[str, float], options: Options) -> None:
    copy_note = " (shap on the rewritten copy)" if row["shap_on_rewritten_copy"] else ""
    captum = (
        f", Captum {row['captum_s_per_frame']:.2f} s ({row['captum_cpu_s_per_frame']:.2f} CPU-s, "
        f"max |Δ| vs shap {row['captum_max_abs_diff']:.1e})"
        if options.captum
        else ""
    )
    print(
        f"{arch:<9} {int(row['size'])}px: shap {row['shap_s_per_frame']:.2f} s{copy_note}, ours "
        f"{row['ours_s_per_frame']:.2f} s ({row['speedup']:.1f}x wall, {row['speedup_cpu']:.1f}x CPU)"
        f"{captum}",
        flush=True,
    )
    print(
        f"          CPU-s per frame: shap {row['shap_cpu_s_per_frame']:.2f}, "
        f"ours {row['ours_cpu_s_per_frame']:.2f}; "
        f"multiply-add floor ({2 * options.background} rows × {row['gmacs_per_row']:.3f} GMAC) "
        f"{row['floor_cpu_s']:.2f} CPU-s → ours {row['ours_cpu_over_floor']:.2f}x the floor",
        flush=True,
    )
    print(
        f"          max |Δ| vs shap {row['max_abs_diff']:.1e} (largest value {row['max_abs_value']:.1e}); "
        f"additivity error {row['additivity_error']:.1e}",
        flush=True,
    )


def run(options: Options | None = None) -> dict[str, object]:
    import torch

    from explain.deepshap import keep_freed_memory

    if options is None:
        threads = int(os.environ.get("BENCH_EXPLAIN_THREADS", "0"))
        if threads:
            torch.set_num_threads(threads)
        options = Options(
            archs=tuple(
                a for a in os.environ.get("BENCH_EXPLAIN_ARCHS", ",".join(DEFAULT.archs)).split(",") if a
            ),
            size=int(os.environ.get("BENCH_EXPLAIN_SIZE", DEFAULT.size)),
            background=int(os.environ.get("BENCH_EXPLAIN_BACKGROUND", DEFAULT.background)),
            repeats=int(os.environ.get("BENCH_EXPLAIN_REPEATS", DEFAULT.repeats)),
            captum=os.environ.get("BENCH_EXPLAIN_CAPTUM", "1") != "0",
        )
    allocator = keep_freed_memory()  # before anything is timed: every method runs with it
    print(
        f"DeepSHAP, {options.background} background frames, torchvision networks at "
        f"{options.size}×{options.size} (seed, edge at 224), both outputs, one frame at a time, "
        f"{options.repeats} interleaved repeats; torch threads {torch.get_num_threads()}, "
        f"glibc keep-freed-memory {'on' if allocator else 'unavailable'} for all methods",
        flush=True,
    )
    return {arch: _bench_arch(arch, options) for arch in options.archs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_explain", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--archs", default=",".join(DEFAULT.archs))
    parser.add_argument(
        "--size", type=int, default=DEFAULT.size, help="input size of the torchvision networks (default 224)"
    )
    parser.add_argument("--background", type=int, default=DEFAULT.background)
    parser.add_argument("--repeats", type=int, default=DEFAULT.repeats)
    parser.add_argument("--no-captum", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run(
        Options(
            tuple(a for a in args.archs.split(",") if a),
            args.size,
            args.background,
            args.repeats,
            not args.no_captum,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
