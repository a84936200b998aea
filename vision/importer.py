"""`car import`: a torch `state_dict` of a torchvision classifier becomes an ordinary model bundle.

The weights are the user's file (nothing is downloaded), read with `weights_only=True` and checked tensor
by tensor against the registered architecture with one head output per label (`vision.transfer.fit_state`).
The bundle is made by `vision.export.build_bundle`, as `car train` makes one: ONNX checked for parity against
the torch network, the torch weights (in this project's `net.`-prefixed form), INT8 when calibration frames
are given, and a manifest naming the labels, the stop label, the output kind and the preprocessing.

A JetBot collision-avoidance `best_model.pth` is a resnet18 (or alexnet) state_dict with a 2-way head over
ImageFolder's alphabetical classes `blocked, free`, read through a softmax on ImageNet-normalised 224×224
frames: `--arch resnet18 --labels blocked,free --stop-label blocked --output softmax`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from vision.architectures import OUTPUT_KINDS, arch_spec
from vision.bundle import ModelBundle, TrainingDataSummary
from vision.errors import VisionError
from vision.preprocess import Preprocessing

IMAGENET = "imagenet"
"""`--labels imagenet`: the 1000 ImageNet class names torchvision ships (no download)."""


class ImportRequestError(VisionError, ValueError):
    """An import that cannot work; the message names the input and the fix."""


@dataclass(frozen=True, slots=True)
class ImportSpec:
    arch: str
    weights: Path
    labels: tuple[str, ...]
    stop_label: str
    output: str
    prep: Preprocessing
    threshold: float = 0.5


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in output order, from torchvision's metadata (no weights fetched)."""
    from torchvision.models import ResNet18_Weights

    return tuple(str(c) for c in ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def parse_labels(text: str) -> tuple[str, ...]:
    """`L1,L2[,...]` (spaces around names dropped) or `imagenet`."""
    if text.strip().lower() == IMAGENET:
        return imagenet_labels()
    labels = tuple(part.strip() for part in text.split(","))
    if len(labels) < 2 or not all(labels):
        raise ImportRequestError(
            f"--labels {text!r}: give at least two comma-separated names (or 'imagenet')"
        )
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ImportRequestError(f"--labels {text!r}: {dupes} named twice; every output needs its own name")
    return labels


def check_spec(spec: ImportSpec) -> None:
    """Everything about the request that can be checked before the weights are read."""
    if spec.stop_label not in spec.labels:
        shown = list(spec.labels) if len(spec.labels) <= 10 else f"{len(spec.labels)} labels"
        raise ImportRequestError(f"--stop-label {spec.stop_label!r} is not one of --labels ({shown})")
    if spec.output not in OUTPUT_KINDS:
        raise ImportRequestError(f"--output {spec.output!r}: choose one of {list(OUTPUT_KINDS)}")
    try:
        found = arch_spec(spec.arch).problems(spec.labels, spec.output, spec.prep.input_size)
    except ValueError as exc:
        raise ImportRequestError(f"--arch: {exc}") from None
    if found:
        raise ImportRequestError(f"--arch {spec.arch}: {'; '.join(found)}")
    if not 0.0 < spec.threshold < 1.0:
        raise ImportRequestError(f"--threshold {spec.threshold}: must lie strictly between 0 and 1")


def load_network(spec: ImportSpec) -> object:
    """The registered network with the user's weights, every tensor checked (the head included)."""
    from vision.networks import build_network
    from vision.transfer import InitError, fit_state, read_state_dict

    state = read_state_dict(spec.weights)
    network = build_network(spec.arch, len(spec.labels), spec.output)
    try:
        fitted, _ = fit_state(network, state, f"--weights {spec.weights}", allow_new_head=False)
    except InitError as exc:
        raise ImportRequestError(f"{exc} (arch {spec.arch}, {len(spec.labels)} labels)") from None
    network.load_state_dict(fitted)
    return network.eval()


def import_bundle(
    spec: ImportSpec,
    out: str | Path,
    calib_dir: Path | None = None,
    *,
    limit: int | None = 512,
    command: str = "",
    threads: int = 1,
    int8_scope: str = "linear",
) -> ModelBundle:
    """Write the bundle; with `calib_dir` (a folder of GO/STOP frames) also INT8, calibrated on them."""
    from vision.export import OutputHead, build_bundle, load_labelled_frames

    check_spec(spec)
    network = load_network(spec)
    calib = None
    if calib_dir is not None:
        calib = load_labelled_frames(calib_dir, spec.prep.input_size, limit=limit, seed=0)
    digest = hashlib.sha256(spec.weights.read_bytes()).hexdigest()
    data = TrainingDataSummary(
        source=f"imported from {spec.weights} (sha256 {digest[:16]}…)", command=command
    )
    return build_bundle(
        network,  # type: ignore[arg-type]
        spec.arch,
        out,
        calib,
        int8=calib is not None,
        prep=spec.prep,
        threshold=spec.threshold,
        data=data,
        threads=threads,
        int8_scope=int8_scope,
        head=OutputHead(spec.labels, spec.stop_label, spec.output),
    )
