"""`car explain`'s work: replay a drive log through an attribution method on the network that drove,
measure, report.

Steps: read the log's ticks (without images) → prove the bundle is the network that drove (file hashes
recorded in the log, then its torch twin re-run on every logged frame) → choose frames (`--select`) →
background → explain with `--method` (stored per frame, resumable) → registered metrics, occlusion,
sanity check, faithfulness of every method → HTML report.

The one entry point for callers (the CLI, the fleet audit) is `run_audit(AuditOptions) -> AuditResult`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain import reuse
from explain.audit_metrics import FrameEvidence, measure, rests_on_background, summarise_metrics
from explain.audit_types import (
    DEFAULT_HORIZON,
    AuditNumbers,
    AuditOptions,
    AuditResult,
    FrameAudit,
    ModelCheck,
    Tick,
)
from explain.background import Background, load_background
from explain.errors import ExplainError
from explain.explainers import EXPLAINERS, ExplainContext, Explainer, build_explainer
from explain.faithfulness import MIN_OUTPUT, Faithfulness, faithfulness_of
from explain.metrics import mask_to_input, pixel_map
from explain.occlusion import MapFunction, OcclusionRow, occlusion_table
from explain.sanity import SanityCheck, stop_maps_of
from explain.selection import parse_selector
from explain.store import AttributionStore, Fingerprint, StoredFrame, ids_sha256, pixels_sha256
from vision.labels import GO, STOP

if TYPE_CHECKING:
    from torch import nn

    from car.drivelog import DriveLogReader, DriveMeta
    from vision.bundle import ModelBundle
    from vision.preprocess import Preprocessing

__all__ = ["DEFAULT_HORIZON", "AuditOptions", "AuditResult", "audit_numbers_json", "run_audit"]

OUTPUT_CHOICES: dict[str, tuple[int, ...]] = {"both": (GO, STOP), "stop": (STOP,)}
REPRODUCE_TOLERANCE = 1e-3  # max |ΔP| between the logged fp32 ONNX outputs and the torch twin
CHECK_BACKGROUND = 25  # occlusion, sanity and faithfulness use the first 25 background frames
BATCH = 32


# ------------------------------------------------------------------------------------------ reading


def read_ticks(log: DriveLogReader) -> tuple[Tick, ...]:
    ticks = []
    for r in log.records(images=False):
        ticks.append(
            Tick(
                seq=r.seq,
                t=r.t_tick,
                p_stop=None if r.probs is None else r.probs.stop,
                decision=r.decision.label,
                faults=tuple(str(f.kind) for f in r.faults),
                has_frame=r.frame_seq is not None,
                truth_label=None if r.truth is None else r.truth.label,
            )
        )
    return tuple(ticks)


def resolve_bundle(meta: DriveMeta, model: Path | None) -> tuple[ModelBundle, bool]:
    """The bundle to explain and whether it is the one that drove (`car.drivelog.bundle_matches`, the rule
    `car replay` uses too)."""
    from vision.bundle import load_bundle

    if not meta.bundle_files:
        raise ExplainError("the drive log records no network hashes (no bundle drove it); nothing to explain")
    from car.drivelog import bundle_matches

    bundle = load_bundle(model if model is not None else Path(meta.bundle_path))
    return bundle, bundle_matches(meta, bundle)


def frame_inputs(rgb: Sequence[np.ndarray], prep: Preprocessing) -> np.ndarray:
    from vision.preprocess import fit_to_input, to_network_input

    return to_network_input(np.stack([fit_to_input(f, prep.input_size) for f in rgb]), prep)


def _framed_batches(
    log: DriveLogReader, size: int = BATCH
) -> Iterator[list[tuple[int, np.ndarray, float | None]]]:
    batch: list[tuple[int, np.ndarray, float | None]] = []
    for r in log.records(masks=False):
        if r.rgb is None:
            continue
        batch.append((r.seq, r.rgb, None if r.probs is None else r.probs.stop))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _twin_agreement(
    log: DriveLogReader, prep: Preprocessing, network: nn.Module, device: str
) -> tuple[int, int, float]:
    """(agreeing decisions, compared, max |ΔP(STOP)|) of the torch twin against the logged outputs."""
    import torch

    threshold = log.meta.threshold
    agree = compared = 0
    worst = 0.0
    # A channels-last copy: oneDNN's convolutions and max-pooling run ~1.7x faster in that layout on CPU
    # (the same weights and arithmetic; outputs equal to ~1e-7). The original keeps its layout.
    twin = copy.deepcopy(network).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for batch in _framed_batches(log):
            x = torch.from_numpy(frame_inputs([b[1] for b in batch], prep)).to(device)
            out = twin(x.contiguous(memory_format=torch.channels_last))[:, STOP]
            for (_, _, logged), mine in zip(batch, out.cpu().numpy().astype(np.float64), strict=True):
                if logged is None:
                    continue
                compared += 1
                agree += int((logged >= threshold) == (mine >= threshold))
                worst = max(worst, abs(float(mine) - logged))
    return agree, compared, worst


def check_model(
    log: DriveLogReader, bundle: ModelBundle, network: nn.Module, *, match: bool, override: bool, device: str
) -> ModelCheck:
    """Re-run the torch twin on every logged frame and compare with the logged P(STOP)."""
    meta = log.meta
    agree, compared, worst = _twin_agreement(log, bundle.manifest.preprocessing, network, device)
    check = ModelCheck(
        bundle_name=bundle.manifest.name,
        bundle_path=str(bundle.root),
        arch=bundle.manifest.arch,
        weights_sha256=bundle.manifest.files["weights"].sha256,
        drove_name=meta.bundle_name,
        drove_path=meta.bundle_path,
        runtime=meta.runtime,
        hashes_match=match,
        override=override,
        agree=agree,
        compared=compared,
        max_prob_diff=worst,
        threshold=meta.threshold,
    )
    if override:
        return check
    if not match:
        raise ExplainError(
            f"{bundle.root}: its files are not the network that drove {log.path} (sha256 differs from the "
            "log's record); pass --model BUNDLE to explain another network anyway"
        )
    if meta.runtime != "int8" and (agree < compared or worst > REPRODUCE_TOLERANCE):
        raise ExplainError(
            f"{bundle.root}: its torch weights do not reproduce the logged decisions "
            f"({agree}/{compared} agree, max |ΔP| {worst:.3g}); the bundle was altered: "
            "pass --model BUNDLE to explain it anyway"
        )
    return check


def cached_background(out: Path, spec: str, size: int) -> Background:
    """The background, kept in OUT/background.npz so a resumed audit does not rebuild (re-render) it."""
    path = Path(out) / "background.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["spec"]) == spec and z["images"].shape[1] == size:
                    return Background(spec, z["images"], tuple(str(i) for i in z["ids"]))
        except (OSError, KeyError, ValueError):
            pass  # unreadable: rebuilt below
    background = load_background(spec, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("background.tmp.npz")
    np.savez(tmp, spec=np.asarray(spec), images=background.images, ids=np.asarray(background.ids))
    tmp.replace(path)
    return background


# ------------------------------------------------------------------------------------------ explaining


def explain_frames(
    explainer: Explainer,
    log: DriveLogReader,
    seqs: Sequence[int],
    store: AttributionStore,
    prep: Preprocessing,
    *,
    progress: bool,
    outputs: tuple[int, ...],
) -> int:
    """Explain the frames not yet stored; returns how many were reused from the store."""
    from tqdm import tqdm

    todo = [s for s in seqs if not store.has(s)]
    reused = len(seqs) - len(todo)
    step = max(1, explainer.frames_per_pass)
    desc = explainer.name
    with tqdm(total=len(todo), unit="frame", desc=desc, disable=not progress, leave=False) as bar:
        for lo in range(0, len(todo), step):
            chunk = todo[lo : lo + step]
            rgb = []
            for seq in chunk:
                image = log[seq].rgb
                assert image is not None
                rgb.append(image)
            result = explainer.explain(frame_inputs(rgb, prep), outputs)
            for i, seq in enumerate(chunk):
                store.save(
                    StoredFrame(
                        seq, result.values[i], result.outputs, result.expected, result.model_output[i]
                    )
                )
            bar.update(len(chunk))
    return reused


@dataclass(frozen=True, slots=True)
class FrameContext:
    """What judging one frame needs besides its values."""

    has_truth: bool  # the drive has ground truth (simulated)
    horizon: float
    threshold: float


def stop_pixel_map(stored: StoredFrame) -> np.ndarray:
    """The stored frame's STOP map, summed over the colour channels."""
    return pixel_map(stored.values[stored.outputs.index(STOP)])


def audit_frame(
    stored: StoredFrame, tick: Tick, can_mask: np.ndarray | None, ctx: FrameContext
) -> FrameAudit:
    """Every registered metric of one explained frame. Flagged: the network's own STOP (P(STOP) ≥
    threshold; a STOP the policy forced because of a fault is not the network's) resting mostly on
    background."""
    stop_map = stop_pixel_map(stored)
    size = stop_map.shape[0]
    mask = None if can_mask is None else mask_to_input(can_mask, size)
    values = measure(FrameEvidence(stop_map, mask, ctx.horizon))
    p_stop = float(stored.model_output[stored.outputs.index(STOP)])
    p_go = float(stored.model_output[stored.outputs.index(GO)]) if GO in stored.outputs else float("nan")
    return FrameAudit(
        seq=tick.seq,
        t=tick.t,
        p_stop=p_stop,
        p_go=p_go,
        decision=tick.decision,
        faults=tick.faults,
        truth_label=tick.truth_label,
        metrics=values,
        flagged=rests_on_background(p_stop >= ctx.threshold, values, ctx.has_truth),
    )


# ------------------------------------------------------------------------------------------ checks


class CheckExplainers:
    """Explainers against the first CHECK_BACKGROUND background frames, built once per method."""

    def __init__(self, context: ExplainContext, bundle: ModelBundle) -> None:
        self.context = context.with_background(CHECK_BACKGROUND)
        self.bundle = bundle

    def get(self, method: str) -> Explainer:
        return reuse.explainer(method, self.context, self.bundle)

    def stop_maps(self, method: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(STOP) per frame, STOP pixel maps) of network inputs `x`."""
        result = self.get(method).explain(x, (STOP,))
        return result.model_output[:, 0], stop_maps_of(result.of_output(STOP))


def occlusion_check(
    checks: CheckExplainers, method: str, *, rgb: np.ndarray, prep: Preprocessing, threshold: float, seed: int
) -> tuple[OcclusionRow, ...]:
    from vision.preprocess import to_network_input

    def run(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return checks.stop_maps(method, to_network_input(frames, prep))

    explain: MapFunction = run
    return occlusion_table(rgb, explain, threshold, seed)


def run_sanity(
    checks: CheckExplainers, method: str, network: nn.Module, x: np.ndarray, seed: int
) -> SanityCheck:
    """Cascading randomisation of the torch twin; the method's maps recomputed after each layer."""
    from explain.sanity import cascading_randomisation

    def maps(model: nn.Module) -> np.ndarray:
        explainer = build_explainer(method, checks.context.with_network(model))
        return stop_maps_of(explainer.explain(x, (STOP,)).of_output(STOP))

    check = cascading_randomisation(network, maps, seed)
    return replace(check, background=len(checks.context.background))


def faithfulness_check(
    checks: CheckExplainers, chosen: tuple[str, np.ndarray], x: np.ndarray, fill: np.ndarray, seed: int
) -> tuple[Faithfulness, ...]:
    """The deletion gap of every registered method on the frames `x`; the chosen method's maps are
    `chosen[1]` (the ones stored for the report), the others are made against the check background."""
    from explain.explainers.base import torch_predict

    predict = torch_predict(checks.context.network, checks.context.device)
    maps = {m: chosen[1] if m == chosen[0] else checks.stop_maps(m, x)[1] for m in EXPLAINERS}
    return faithfulness_of(maps, x, fill=fill, predict=predict, output=STOP, seed=seed)


# ------------------------------------------------------------------------------------------ the steps


@dataclass(frozen=True, slots=True)
class Verified:
    """The drive's ticks and the network proven (or declared) to be the one that drove."""

    ticks: tuple[Tick, ...]
    bundle: ModelBundle
    network: nn.Module
    model: ModelCheck


@dataclass(frozen=True, slots=True)
class Explained:
    frames: tuple[FrameAudit, ...]
    images: dict[int, np.ndarray]  # the frames the report draws and the checks use, at input size
    store: AttributionStore
    reused: int


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[name] = now - since
        return now


def check_options(options: AuditOptions) -> tuple[int, ...]:
    """The explained outputs; a one-line error for any option out of range."""
    import torch

    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise ExplainError(f"--device {options.device}: no CUDA device here; use --device cpu")
    if not 0.0 < options.horizon < 1.0:
        raise ExplainError(f"--horizon {options.horizon}: give a fraction of the image height, 0 < h < 1")
    if options.outputs not in OUTPUT_CHOICES:
        raise ExplainError(f"--outputs {options.outputs!r}: choose one of {sorted(OUTPUT_CHOICES)}")
    if options.method not in EXPLAINERS:
        raise ExplainError(f"--method {options.method!r}: choose one of {', '.join(EXPLAINERS)}")
    if min(options.occlusion_frames, options.sanity_frames, options.faithfulness_frames) < 0:
        raise ExplainError("--occlusion-frames, --sanity-frames and --faithfulness-frames must be 0 or more")
    parse_selector(options.select)
    return OUTPUT_CHOICES[options.outputs]


def verify(log: DriveLogReader, options: AuditOptions) -> Verified:
    ticks = read_ticks(log)
    if not any(t.has_frame for t in ticks):
        raise ExplainError(f"{options.log}: the drive log holds no frames; nothing to explain")
    bundle, match = resolve_bundle(log.meta, options.model)
    network = reuse.twin(bundle, options.device)  # (GO, STOP) columns for any labels; once per process
    model = check_model(
        log, bundle, network, match=match, override=options.model is not None, device=options.device
    )
    return Verified(ticks, bundle, network, model)


def explain_context(
    verified: Verified, background: Background, options: AuditOptions, runtime: str
) -> ExplainContext:
    from vision.detector import GoStop
    from vision.preprocess import to_network_input

    bundle = verified.bundle
    role = "onnx_int8" if runtime == "int8" and bundle.has("onnx_int8") else "onnx"
    return ExplainContext(
        network=verified.network,
        background=to_network_input(background.images, bundle.manifest.preprocessing),
        device=options.device,
        onnx=bundle.path_of(role),
        onnx_outputs=GoStop.of(bundle.manifest),
    )


def explain_and_measure(
    log: DriveLogReader,
    verified: Verified,
    context: ExplainContext,
    store: AttributionStore,
    *,
    options: AuditOptions,
    outputs: tuple[int, ...],
    seqs: Sequence[int],
) -> Explained:
    """Explain the selected frames (resuming from the store), measure each, keep the images needed later."""
    from explain.report import figure_frames
    from vision.preprocess import fit_to_input

    prep = verified.bundle.manifest.preprocessing
    explainer = reuse.explainer(options.method, context, verified.bundle)
    reused = explain_frames(explainer, log, seqs, store, prep, progress=options.progress, outputs=outputs)
    by_seq = {t.seq: t for t in verified.ticks}
    frame_ctx = FrameContext(
        any(t.truth_label is not None for t in verified.ticks), options.horizon, verified.model.threshold
    )
    frames: list[FrameAudit] = []
    for seq in seqs:
        record = log[seq]
        assert record.rgb is not None
        mask = None if record.truth is None else record.truth.mask
        if record.truth is not None and mask is None:
            mask = np.zeros(record.rgb.shape[:2], dtype=bool)
        frames.append(audit_frame(store.load(seq), by_seq[seq], mask, frame_ctx))
    # Only the frames the report draws and the checks use are kept in memory (a long drive with
    # `--select all` has thousands of explained frames).
    wanted = {f.seq for f in figure_frames(frames)} | {
        f.seq for f in ranked(frames)[: checked_count(options)]
    }
    images = {}
    for seq in sorted(wanted):
        rgb = log[seq].rgb
        assert rgb is not None
        images[seq] = fit_to_input(rgb, prep.input_size)
    return Explained(tuple(frames), images, store, reused)


def ranked(frames: Sequence[FrameAudit]) -> list[FrameAudit]:
    """The most confident STOP frames first."""
    return sorted(frames, key=lambda f: -f.p_stop)


def checked_count(options: AuditOptions) -> int:
    return max(options.occlusion_frames, options.sanity_frames, options.faithfulness_frames)


@dataclass(frozen=True, slots=True)
class Checks:
    occlusion: tuple[OcclusionRow, ...]
    sanity: SanityCheck | None
    faithfulness: tuple[Faithfulness, ...]


def run_checks(
    verified: Verified, context: ExplainContext, explained: Explained, options: AuditOptions, watch: Stopwatch
) -> Checks:
    """Occlusion of image halves, cascading randomisation, and every method's faithfulness, on the most
    confident STOP frames."""
    from vision.preprocess import to_network_input

    prep = verified.bundle.manifest.preprocessing
    top = ranked(explained.frames)
    checks = CheckExplainers(context, verified.bundle)
    t = time.perf_counter()
    occlusion: tuple[OcclusionRow, ...] = ()
    if options.occlusion_frames > 0:
        picked = np.stack([explained.images[f.seq] for f in top[: options.occlusion_frames]])
        occlusion = occlusion_check(
            checks,
            options.method,
            rgb=picked,
            prep=prep,
            threshold=verified.model.threshold,
            seed=options.seed,
        )
    t = watch.lap("occlusion", t)
    sanity = None
    if options.sanity_frames > 0:
        chosen = np.stack([explained.images[f.seq] for f in top[: options.sanity_frames]])
        sanity = run_sanity(
            checks, options.method, verified.network, to_network_input(chosen, prep), options.seed
        )
    t = watch.lap("sanity", t)
    faithful: tuple[Faithfulness, ...] = ()
    frames = [f for f in top[: options.faithfulness_frames] if f.p_stop >= MIN_OUTPUT]
    if frames:
        x = to_network_input(np.stack([explained.images[f.seq] for f in frames]), prep)
        stored = np.stack([stop_pixel_map(explained.store.load(f.seq)) for f in frames])
        fill = context.background.mean(axis=0)
        faithful = faithfulness_check(checks, (options.method, stored), x, fill, options.seed)
    watch.lap("faithfulness", t)
    return Checks(occlusion, sanity, faithful)


def summarise(
    frames: Sequence[FrameAudit], verified: Verified, checks: Checks, method: str, t0: float
) -> AuditNumbers:
    by_method = {f.method: f.score for f in checks.faithfulness}
    return AuditNumbers(
        frames_explained=len(frames),
        frames_total=sum(t.has_frame for t in verified.ticks),
        metrics=summarise_metrics([f.metrics for f in frames]),
        flagged=sum(f.flagged for f in frames),
        agree=verified.model.agree,
        agree_of=verified.model.compared,
        sanity_final_rank_correlation=None if checks.sanity is None else checks.sanity.final,
        sanity_passed=None if checks.sanity is None else checks.sanity.passed,
        method=method,
        faithfulness=by_method.get(method),
        faithfulness_by_method=by_method,
        seconds=time.perf_counter() - t0,
    )


def audit_numbers_json(result: AuditResult) -> dict[str, object]:
    """What `car explain --json` prints."""
    return result.numbers.to_json()


def run_audit(options: AuditOptions) -> AuditResult:
    """Audit one drive log: exactly what `car explain` does, as a library call (the fleet audit's entry).

    Verifies the network, explains the selected frames with `options.method` (resuming from
    `options.out/attributions`), measures every registered metric, runs the occlusion, sanity and
    faithfulness checks, writes `report.html`, `audit.json` and the figures into `options.out`, and returns
    everything; `audit_numbers_json(result)` is what `--json` prints. User errors raise `ExplainError` (or
    the bundle's and drive log's own error types), with one line saying what to change.
    """
    from car.drivelog import DriveLogReader
    from explain.deepshap import keep_freed_memory
    from explain.report import write_report

    watch = Stopwatch()
    keep_freed_memory()
    outputs = check_options(options)
    with DriveLogReader(options.log) as log:
        verified = verify(log, options)
        t = watch.lap("verify", watch.t0)
        seqs = parse_selector(options.select).select([x.info() for x in verified.ticks], log.meta.threshold)
        if not seqs:
            raise ExplainError(f"--select {options.select}: no frame of {options.log} was selected")
        size = verified.bundle.manifest.preprocessing.input_size
        background = cached_background(options.out, options.background, size)
        t = watch.lap("background", t)
        context = explain_context(verified, background, options, log.meta.runtime)
        fingerprint = Fingerprint(
            verified.model.weights_sha256,
            pixels_sha256(background.images),
            ids_sha256(background.ids),
            outputs,
            options.method,
        )
        store = AttributionStore(options.out, fingerprint)
        explained = explain_and_measure(
            log, verified, context, store, options=options, outputs=outputs, seqs=seqs
        )
        watch.lap("explain", t)
    checks = run_checks(verified, context, explained, options, watch)
    result = AuditResult(
        options=options,
        model=verified.model,
        background=background,
        ticks=verified.ticks,
        frames=explained.frames,
        occlusion=checks.occlusion,
        sanity=checks.sanity,
        faithfulness=checks.faithfulness,
        numbers=summarise(explained.frames, verified, checks, options.method, watch.t0),
        report=Path(options.out) / "report.html",
        reused=explained.reused,
        timings=watch.timings,
    )
    t = time.perf_counter()
    write_report(result, explained.images, store.load)
    t = watch.lap("report", t)
    watch.timings["total"] = t - watch.t0
    return result
