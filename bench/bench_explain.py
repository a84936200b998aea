"""DeepSHAP speed: the published way (shap.DeepExplainer, both outputs, one frame at a time) vs ours.

Same network (the published `seed` architecture, seeded weights: timing does not need training), same 100
background frames, same explained frames, measured side by side in this one run. Also prints max |Δ| of
each output's values against shap's and the additivity error (Σ values + expected value − output).

Environment knobs: BENCH_EXPLAIN_ARCHS (default "seed,edge"), BENCH_EXPLAIN_SHAP_FRAMES (default 1).
"""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from vision.preprocess import Preprocessing, preprocess

BACKGROUND = 100
OURS_FRAMES = 4


def scene_frames(count: int, seed: int) -> np.ndarray:
    """Real-looking frames: the simulated world's when it is importable, else a drawn floor/wall/can."""
    try:
        from explain.background import simulated_frames

        return simulated_frames(count, seed)
    except Exception:  # the simulator may be absent in a trimmed install; the timing does not depend on it
        rng = np.random.default_rng(seed)
        frames = []
        for _ in range(count):
            img = np.empty((240, 320, 3), np.uint8)
            horizon = int(rng.integers(80, 130))
            img[:horizon] = rng.integers(150, 230, 3)
            img[horizon:] = rng.integers(60, 160, 3)
            noise = rng.normal(0, 6, img.shape)
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
            if rng.random() < 0.5:
                cx, cy = int(rng.integers(100, 220)), int(rng.integers(horizon + 20, 220))
                r = int(rng.integers(12, 40))
                cv2.rectangle(img, (cx - r, cy - 2 * r), (cx + r, cy), (20, 20, 22), -1)
            frames.append(img)
        return np.stack(frames)


def _inputs(count: int, seed: int) -> np.ndarray:
    prep = Preprocessing()
    return np.concatenate([preprocess(f, prep) for f in scene_frames(count, seed)])


def _bench_arch(arch: str, shap_frames: int) -> dict[str, float]:
    import shap
    import torch

    from explain.deepshap import DeepShapEngine
    from vision.networks import build_network

    torch.manual_seed(0)
    model = build_network(arch).eval()
    background = torch.from_numpy(_inputs(BACKGROUND, seed=1))
    frames = _inputs(OURS_FRAMES, seed=2)

    explainer = shap.DeepExplainer(model, background)
    t0, c0 = time.perf_counter(), time.process_time()
    published = [explainer.shap_values(torch.from_numpy(frames[i : i + 1])) for i in range(shap_frames)]
    shap_s, shap_cpu = (time.perf_counter() - t0) / shap_frames, (time.process_time() - c0) / shap_frames
    reference = np.concatenate(published)  # (frames, C, H, W, outputs)

    t0 = time.perf_counter()
    engine = DeepShapEngine(model, background)
    setup_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    single = [engine.explain(frames[i : i + 1]) for i in range(shap_frames)]
    ours_s, ours_cpu = (time.perf_counter() - t0) / shap_frames, (time.process_time() - c0) / shap_frames
    t0, c0 = time.perf_counter(), time.process_time()
    batched = engine.explain(frames)
    batched_s, batched_cpu = (
        (time.perf_counter() - t0) / len(frames),
        (time.process_time() - c0) / len(frames),
    )
    t0 = time.perf_counter()
    stop_only = engine.explain(frames[:1], outputs=(1,))
    stop_only_s = time.perf_counter() - t0

    ours = np.concatenate([a.values for a in single]).transpose(0, 2, 3, 4, 1)
    delta = np.abs(ours - reference)
    additivity = max(float(batched.additivity_error().max()), float(stop_only.additivity_error().max()))
    row = {
        "shap_s_per_frame": shap_s,
        "ours_setup_s": setup_s,
        "ours_s_per_frame": ours_s,
        "ours_batched_s_per_frame": batched_s,
        "ours_stop_only_s_per_frame": stop_only_s,
        "shap_cpu_s_per_frame": shap_cpu,
        "ours_cpu_s_per_frame": ours_cpu,
        "ours_batched_cpu_s_per_frame": batched_cpu,
        "speedup_one_frame": shap_s / ours_s,
        "speedup_one_frame_cpu": shap_cpu / ours_cpu,
        "speedup_batched_cpu": shap_cpu / batched_cpu,
        "speedup_batched": shap_s / batched_s,
        "max_abs_diff_stop": float(delta[..., 1].max()),
        "max_abs_diff_go": float(delta[..., 0].max()),
        "max_abs_value": float(np.abs(reference).max()),
        "additivity_error": additivity,
        "background_cached": float(engine.caches_background),
    }
    print(
        f"{arch:<5} shap {shap_s:7.2f} s/frame | ours {ours_s:6.2f} s/frame one at a time "
        f"({shap_s / ours_s:4.1f}x), {batched_s:6.2f} s/frame in batches of {OURS_FRAMES} "
        f"({shap_s / batched_s:4.1f}x), STOP only {stop_only_s:6.2f} s, set-up {setup_s:5.2f} s once"
    )
    print(
        f"      CPU seconds per frame (robust to other load): shap {shap_cpu:.2f}, ours {ours_cpu:.2f} "
        f"({shap_cpu / ours_cpu:.1f}x), batched {batched_cpu:.2f} ({shap_cpu / batched_cpu:.1f}x)"
    )
    print(
        f"      max |Δ| STOP {row['max_abs_diff_stop']:.2e}, GO {row['max_abs_diff_go']:.2e} "
        f"(largest value {row['max_abs_value']:.2e}); additivity error {additivity:.2e}",
        flush=True,
    )
    return row


def run() -> dict[str, object]:
    import torch

    archs = os.environ.get("BENCH_EXPLAIN_ARCHS", "seed,edge").split(",")
    shap_frames = int(os.environ.get("BENCH_EXPLAIN_SHAP_FRAMES", "1"))
    print(f"DeepSHAP, {BACKGROUND} background frames, both outputs, torch threads {torch.get_num_threads()}")
    return {arch: _bench_arch(arch, shap_frames) for arch in archs if arch}
