"""`car explain`'s work: replay a drive log through DeepSHAP on the network that drove, measure, report.

Steps: read the log's ticks (without images) → prove the bundle is the network that drove (file hashes
recorded in the log, then its torch twin re-run on every logged frame) → choose frames (`--select`) →
background → explain (stored per frame, resumable) → metrics, occlusion, sanity check → HTML report.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain.background import DEFAULT_SPEC, Background, load_background
from explain.errors import ExplainError
from explain.metrics import Focus, Look, focus, look, mask_to_input, pixel_map, rests_on_background
from explain.occlusion import Explainer, OcclusionRow, occlusion_table
from explain.sanity import SanityCheck
from explain.selection import TickInfo, parse_selector
from explain.store import AttributionStore, Fingerprint, StoredFrame, ids_sha256, pixels_sha256
from vision.labels import GO, STOP

if TYPE_CHECKING:
    from torch import nn

    from car.drivelog import DriveLogReader, DriveMeta
    from explain.deepshap import DeepShapEngine
    from vision.bundle import ModelBundle
    from vision.preprocess import Preprocessing

OUTPUT_CHOICES: dict[str, tuple[int, ...]] = {"both": (GO, STOP), "stop": (STOP,)}
REPRODUCE_TOLERANCE = 1e-3  # max |ΔP| between the logged fp32 ONNX outputs and the torch twin
DEFAULT_HORIZON = 0.35  # the simulated camera (12° down, 62° FOV) sees the horizon at ~32% of the height
CHECK_BACKGROUND = 25  # occlusion and sanity checks use the first 25 background frames (7 maps a frame)
BATCH = 32


@dataclass(frozen=True, slots=True)
class AuditOptions:
    log: Path
    out: Path
    select: str = "auto"
    background: str = DEFAULT_SPEC
    device: str = "cpu"
    model: Path | None = None
    horizon: float = DEFAULT_HORIZON
    occlusion_frames: int = 6
    sanity_frames: int = 2
    seed: int = 0
    outputs: str = "both"  # "stop": explain P(STOP) only (half the time; the report then has no GO maps)
    progress: bool = True


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """Which network is explained, and how well it matches the one that drove."""

    bundle_name: str
    bundle_path: str
    arch: str
    weights_sha256: str
    drove_name: str
    drove_path: str
    runtime: str
    hashes_match: bool
    override: bool  # --model given: explaining a network that may not be the one that drove
    agree: int  # decisions (P(STOP) ≥ threshold) of the torch twin equal to the logged ones
    compared: int
    max_prob_diff: float
    threshold: float

    @property
    def first_line(self) -> str:
        if self.override and not self.hashes_match:
            return (
                f"NOT THE NETWORK THAT DROVE: explaining {self.bundle_name} ({self.bundle_path}); "
                f"the car drove {self.drove_name} ({self.drove_path}); its torch twin agrees with "
                f"{self.agree} of {self.compared} logged decisions"
            )
        if self.runtime == "int8":
            return (
                f"The car drove the INT8 network of {self.drove_name}; the float twin explained here agrees "
                f"with {self.agree} of {self.compared} decisions (max |ΔP| {self.max_prob_diff:.3g})"
            )
        return (
            f"Explaining {self.bundle_name}, the network that drove (hashes match; the torch twin reproduces "
            f"{self.agree} of {self.compared} decisions, max |ΔP| {self.max_prob_diff:.2g})"
        )


@dataclass(frozen=True, slots=True)
class Tick:
    """One logged tick, without its image."""

    seq: int
    t: float
    p_stop: float | None
    decision: int
    faults: tuple[str, ...]
    has_frame: bool
    truth_label: int | None

    def info(self) -> TickInfo:
        return TickInfo(self.seq, self.has_frame, self.p_stop, self.decision, bool(self.faults))


@dataclass(frozen=True, slots=True)
class FrameAudit:
    seq: int
    t: float
    p_stop: float  # the explained network's output
    p_go: float
    decision: int  # what the car decided
    faults: tuple[str, ...]
    truth_label: int | None
    focus: Focus | None
    look: Look
    flagged: bool


@dataclass(frozen=True, slots=True)
class AuditNumbers:
    """What `--json` prints."""

    frames_explained: int
    frames_total: int
    stop_focus_mean: float | None
    random_focus_mean: float | None
    pointing_hit_rate: float | None
    frames_with_can: int
    flagged: int
    agree: int
    agree_of: int
    below_horizon_mean: float | None
    sanity_final_rank_correlation: float | None
    sanity_passed: bool | None
    seconds: float


@dataclass(frozen=True, slots=True)
class AuditResult:
    options: AuditOptions
    model: ModelCheck
    background: Background
    ticks: tuple[Tick, ...]
    frames: tuple[FrameAudit, ...]
    occlusion: tuple[OcclusionRow, ...]
    sanity: SanityCheck | None
    numbers: AuditNumbers
    report: Path
    reused: int
    timings: dict[str, float] = field(default_factory=dict)


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


def _logged_network_sha(meta: DriveMeta) -> str | None:
    role = "onnx_int8" if meta.runtime == "int8" else "onnx"
    return meta.file_sha256(role)


def resolve_bundle(meta: DriveMeta, model: Path | None) -> tuple[ModelBundle, bool]:
    """The bundle to explain and whether its files are the ones the log recorded."""
    from vision.bundle import load_bundle

    if not meta.bundle_files:
        raise ExplainError("the drive log records no network hashes (no bundle drove it); nothing to explain")
    bundle = load_bundle(model if model is not None else Path(meta.bundle_path))
    role = "onnx_int8" if meta.runtime == "int8" else "onnx"
    logged_net, logged_weights = _logged_network_sha(meta), meta.file_sha256("weights")
    own_net = bundle.manifest.files[role].sha256 if bundle.has(role) else None
    own_weights = bundle.manifest.files["weights"].sha256
    match = logged_net == own_net and (logged_weights is None or logged_weights == own_weights)
    return bundle, match


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


def check_model(
    log: DriveLogReader, bundle: ModelBundle, network: nn.Module, *, match: bool, override: bool, device: str
) -> ModelCheck:
    """Re-run the torch twin on every logged frame and compare with the logged P(STOP)."""
    import torch

    meta = log.meta
    prep = bundle.manifest.preprocessing
    threshold = meta.threshold
    agree = compared = 0
    worst = 0.0
    # A channels-last copy: oneDNN's convolutions and max-pooling run ~1.7x faster in that layout on CPU
    # (the same weights and arithmetic; outputs equal to ~1e-7). The original keeps its layout for DeepSHAP.
    twin = copy.deepcopy(network).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for batch in _framed_batches(log):
            x = torch.from_numpy(frame_inputs([b[1] for b in batch], prep)).to(device)
            p = (
                twin(x.contiguous(memory_format=torch.channels_last))[:, STOP]
                .cpu()
                .numpy()
                .astype(np.float64)
            )
            for (_, _, logged), mine in zip(batch, p, strict=True):
                if logged is None:
                    continue
                compared += 1
                agree += int((logged >= threshold) == (mine >= threshold))
                worst = max(worst, abs(float(mine) - logged))
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
        threshold=threshold,
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
    engine: DeepShapEngine,
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
    step = max(1, engine.settings.frames_per_pass)
    with tqdm(total=len(todo), unit="frame", desc="DeepSHAP", disable=not progress, leave=False) as bar:
        for lo in range(0, len(todo), step):
            chunk = todo[lo : lo + step]
            rgb = []
            for seq in chunk:
                image = log[seq].rgb
                assert image is not None
                rgb.append(image)
            result = engine.explain(frame_inputs(rgb, prep), outputs)
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


def audit_frame(
    stored: StoredFrame, tick: Tick, can_mask: np.ndarray | None, ctx: FrameContext
) -> FrameAudit:
    """Metrics of one explained frame. Flagged: the network's own STOP (P(STOP) ≥ threshold; a STOP the
    policy forced because of a fault is not the network's) resting mostly on background."""
    stop_map = pixel_map(stored.values[stored.outputs.index(STOP)])
    size = stop_map.shape[0]
    focus_score = None if can_mask is None else focus(stop_map, mask_to_input(can_mask, size))
    look_score = look(stop_map, ctx.horizon)
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
        focus=focus_score,
        look=look_score,
        flagged=rests_on_background(p_stop >= ctx.threshold, focus_score, ctx.has_truth, look_score),
    )


def summarise(
    frames: Sequence[FrameAudit],
    ticks: Sequence[Tick],
    model: ModelCheck,
    sanity: SanityCheck | None,
    t0: float,
) -> AuditNumbers:
    with_can = [f.focus for f in frames if f.focus is not None]

    def mean(values: Sequence[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return AuditNumbers(
        frames_explained=len(frames),
        frames_total=sum(t.has_frame for t in ticks),
        stop_focus_mean=mean([f.on_can for f in with_can]),
        random_focus_mean=mean([f.can_area for f in with_can]),
        pointing_hit_rate=mean([float(f.pointing_hit) for f in with_can]),
        frames_with_can=len(with_can),
        flagged=sum(f.flagged for f in frames),
        agree=model.agree,
        agree_of=model.compared,
        below_horizon_mean=mean([f.look.below_horizon for f in frames]),
        sanity_final_rank_correlation=None if sanity is None else sanity.final,
        sanity_passed=None if sanity is None else sanity.passed,
        seconds=time.perf_counter() - t0,
    )


def _stop_explainer(engine: DeepShapEngine, prep: Preprocessing) -> Explainer:
    """P(STOP) and STOP pixel maps of RGB frames, for the occlusion check."""
    from explain.sanity import stop_maps_of
    from vision.preprocess import to_network_input

    def run(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = engine.explain(to_network_input(rgb, prep), (STOP,))
        return result.model_output[:, 0], stop_maps_of(result.of_output(STOP))

    return run


def run_sanity(
    network: nn.Module, background: np.ndarray, frames: np.ndarray, device: str, seed: int
) -> SanityCheck:
    from dataclasses import replace

    from explain.deepshap import DeepShapEngine
    from explain.sanity import cascading_randomisation, stop_maps_of

    def maps(model: nn.Module) -> np.ndarray:
        engine = DeepShapEngine(model, background, device)
        return stop_maps_of(engine.explain(frames, (STOP,)).of_output(STOP))

    check = cascading_randomisation(network, maps, seed)
    return replace(check, background=len(background))


def run_audit(options: AuditOptions) -> AuditResult:
    import torch

    from car.drivelog import DriveLogReader
    from explain.deepshap import DeepShapEngine, keep_freed_memory
    from explain.report import figure_frames, write_report
    from vision.preprocess import fit_to_input, to_network_input
    from vision.torch_model import load_go_stop_network

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    keep_freed_memory()
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise ExplainError(f"--device {options.device}: no CUDA device here; use --device cpu")
    if not 0.0 < options.horizon < 1.0:
        raise ExplainError(f"--horizon {options.horizon}: give a fraction of the image height, 0 < h < 1")
    selector = parse_selector(options.select)
    if options.outputs not in OUTPUT_CHOICES:
        raise ExplainError(f"--outputs {options.outputs!r}: choose one of {sorted(OUTPUT_CHOICES)}")
    outputs = OUTPUT_CHOICES[options.outputs]
    with DriveLogReader(options.log) as log:
        ticks = read_ticks(log)
        if not any(t.has_frame for t in ticks):
            raise ExplainError(f"{options.log}: the drive log holds no frames; nothing to explain")
        bundle, match = resolve_bundle(log.meta, options.model)
        network = load_go_stop_network(bundle, options.device)  # (GO, STOP) columns for any labels
        model = check_model(
            log, bundle, network, match=match, override=options.model is not None, device=options.device
        )
        timings["verify"] = time.perf_counter() - t0
        seqs = selector.select([t.info() for t in ticks], log.meta.threshold)
        if not seqs:
            raise ExplainError(f"--select {options.select}: no frame of {options.log} was selected")
        prep = bundle.manifest.preprocessing
        t_bg = time.perf_counter()
        background = cached_background(options.out, options.background, prep.input_size)
        timings["background"] = time.perf_counter() - t_bg
        bg_inputs = to_network_input(background.images, prep)
        fingerprint = Fingerprint(
            model.weights_sha256, pixels_sha256(background.images), ids_sha256(background.ids), outputs
        )
        store = AttributionStore(options.out, fingerprint)
        t1 = time.perf_counter()
        engine = DeepShapEngine(network, bg_inputs, options.device)
        reused = explain_frames(engine, log, seqs, store, prep, progress=options.progress, outputs=outputs)
        timings["explain"] = time.perf_counter() - t1
        by_seq = {t.seq: t for t in ticks}
        has_truth = any(t.truth_label is not None for t in ticks)
        context = FrameContext(has_truth, options.horizon, model.threshold)
        frames: list[FrameAudit] = []
        for seq in seqs:
            record = log[seq]
            assert record.rgb is not None
            mask = None if record.truth is None else record.truth.mask
            if record.truth is not None and mask is None:
                mask = np.zeros(record.rgb.shape[:2], dtype=bool)
            frames.append(audit_frame(store.load(seq), by_seq[seq], mask, context))
        ranked = sorted(frames, key=lambda f: -f.p_stop)
        # Only the frames the report draws and the checks use are kept in memory (a long drive with
        # `--select all` has thousands of explained frames).
        wanted = {f.seq for f in figure_frames(frames)}
        wanted |= {f.seq for f in ranked[: max(options.occlusion_frames, options.sanity_frames)]}
        images: dict[int, np.ndarray] = {}
        for seq in sorted(wanted):
            rgb = log[seq].rgb
            assert rgb is not None
            images[seq] = fit_to_input(rgb, prep.input_size)
    t2 = time.perf_counter()
    occlusion: tuple[OcclusionRow, ...] = ()
    if options.occlusion_frames > 0:
        picked = np.stack([images[f.seq] for f in ranked[: options.occlusion_frames]])
        check_engine = DeepShapEngine(network, bg_inputs[:CHECK_BACKGROUND], options.device)
        explainer = _stop_explainer(check_engine, prep)
        occlusion = occlusion_table(picked, explainer, model.threshold, options.seed)
    timings["occlusion"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    sanity = None
    if options.sanity_frames > 0:
        chosen = np.stack([images[f.seq] for f in ranked[: options.sanity_frames]])
        sanity = run_sanity(
            network,
            bg_inputs[:CHECK_BACKGROUND],
            to_network_input(chosen, prep),
            options.device,
            options.seed,
        )
    timings["sanity"] = time.perf_counter() - t3
    numbers = summarise(frames, ticks, model, sanity, t0)
    result = AuditResult(
        options=options,
        model=model,
        background=background,
        ticks=ticks,
        frames=tuple(frames),
        occlusion=occlusion,
        sanity=sanity,
        numbers=numbers,
        report=Path(options.out) / "report.html",
        reused=reused,
        timings=timings,
    )
    t4 = time.perf_counter()
    write_report(result, images, store.load)
    timings["report"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    return result
