"""`car explain-image`: the companion experiment on single images, for any classifier bundle.

Per image: the network's top-k classes with an attribution map each (the registered `--method`), then the
top or bottom half masked with white, black and noise (`explain.occlusion.VARIANTS`), and what happens to
the top-k classes and to their maps. Works for GO/STOP bundles and for many-class ones (an ImageNet
classifier): nothing here assumes two outputs. Class names come from the bundle's manifest when it names
one label per output, else `class <index>`.

The entry point for callers is `run_image_audit(ImageAuditOptions) -> ImageAuditResult`;
`image_audit_json(result)` is what `--json` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain.background import DEFAULT_SPEC, load_background
from explain.errors import ExplainError
from explain.explainers import DEFAULT_METHOD, EXPLAINERS, ExplainContext, Explainer, build_explainer
from explain.occlusion import VARIANTS

if TYPE_CHECKING:
    from vision.bundle import ModelBundle


@dataclass(frozen=True, slots=True)
class ImageAuditOptions:
    images: tuple[Path, ...]
    model: Path
    out: Path
    top: int = 5
    background: str = DEFAULT_SPEC
    method: str = DEFAULT_METHOD
    device: str = "cpu"
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ClassScore:
    index: int
    label: str
    probability: float  # the network's output for that class (softmax or sigmoid, as the bundle has it)


@dataclass(frozen=True, slots=True)
class Explained:
    """One image (as masked, or not) at the network's input size, its top-k classes and their pixel maps."""

    rgb: np.ndarray  # S×S×3 uint8
    top: tuple[ClassScore, ...]
    maps: np.ndarray  # (k, S, S): the method's pixel map of each top class


@dataclass(frozen=True, slots=True)
class Masked:
    half: str  # "top" or "bottom"
    fill: str  # "white", "black", "noise"
    view: Explained
    top1_changed: bool


@dataclass(frozen=True, slots=True)
class ImageFinding:
    path: Path
    original: Explained
    masked: tuple[Masked, ...]
    scale: float  # one colour scale for every map of this image: the 99.9th percentile of |value|


@dataclass(frozen=True, slots=True)
class ImageAuditResult:
    options: ImageAuditOptions
    bundle_name: str
    labels_from_manifest: bool
    background_ids: tuple[str, ...]
    images: tuple[ImageFinding, ...]
    report: Path


def class_labels(bundle: ModelBundle, outputs: int) -> tuple[tuple[str, ...], bool]:
    """One name per output and whether the manifest gave them (else `class <i>`)."""
    labels = tuple(str(x) for x in bundle.manifest.labels)
    if len(labels) == outputs:
        return labels, True
    return tuple(f"class {i}" for i in range(outputs)), False


class Classifier:
    """The bundle's torch twin, its preprocessing and class names, and the chosen explainer."""

    def __init__(self, options: ImageAuditOptions) -> None:
        from explain.explainers.base import torch_predict
        from vision.bundle import load_bundle
        from vision.preprocess import to_network_input
        from vision.torch_model import load_torch_network

        self.bundle = load_bundle(options.model)
        self.prep = self.bundle.manifest.preprocessing
        network = load_torch_network(self.bundle, options.device)
        self.background = load_background(options.background, self.prep.input_size)
        references = to_network_input(self.background.images, self.prep)
        self.predict = torch_predict(network, options.device)
        outputs = int(self.predict(references[:1]).shape[1])
        self.labels, self.labels_from_manifest = class_labels(self.bundle, outputs)
        self.top = min(options.top, outputs)
        onnx = self.bundle.path_of("onnx")
        context = ExplainContext(network, references, options.device, onnx)
        self.explainer: Explainer = build_explainer(options.method, context)

    def explain(self, rgb: np.ndarray) -> Explained:
        """Top-k classes of one S×S×3 image and the explainer's map of each."""
        from explain.metrics import pixel_map
        from vision.preprocess import to_network_input

        x = to_network_input(rgb, self.prep)
        probs = self.predict(x)[0]
        order = [int(i) for i in np.argsort(-probs, kind="stable")[: self.top]]
        result = self.explainer.explain(x, order)
        maps = np.stack([pixel_map(result.of_output(o)[0]) for o in order])
        top = tuple(ClassScore(o, self.labels[o], float(probs[o])) for o in order)
        return Explained(rgb, top, maps)


def check_options(options: ImageAuditOptions) -> None:
    if not options.images:
        raise ExplainError("give at least one IMAGE")
    if options.top < 1:
        raise ExplainError(f"--top {options.top}: give 1 or more classes")
    if options.method not in EXPLAINERS:
        raise ExplainError(f"--method {options.method!r}: choose one of {', '.join(EXPLAINERS)}")


def read_image(path: Path, size: int) -> np.ndarray:
    """The image, centre-cropped and resized to the network's input (as every frame the car sees)."""
    from vision.imageio import read_rgb
    from vision.preprocess import fit_to_input

    return fit_to_input(read_rgb(path), size)


def audit_image(classifier: Classifier, path: Path, seed: int) -> ImageFinding:
    rgb = read_image(path, classifier.prep.input_size)
    original = classifier.explain(rgb)
    masked = []
    for i, variant in enumerate(VARIANTS):
        view = classifier.explain(variant.apply(rgb, np.random.default_rng([seed, i])))
        changed = view.top[0].index != original.top[0].index
        masked.append(Masked(variant.half, variant.fill, view, changed))
    every_map = np.concatenate([original.maps, *(m.view.maps for m in masked)])
    scale = float(np.nanpercentile(np.abs(every_map), 99.9)) or 1.0
    return ImageFinding(path, original, tuple(masked), scale)


def run_image_audit(options: ImageAuditOptions) -> ImageAuditResult:
    """Explain each image's top-k classes, mask each half three ways, explain again, write the report.

    Writes `report.html` (self-contained), `image_audit.json` and `figures/*.png` into `options.out`.
    """
    from explain.image_report import write_image_report

    check_options(options)
    classifier = Classifier(options)
    findings = tuple(audit_image(classifier, Path(p), options.seed) for p in options.images)
    result = ImageAuditResult(
        options=options,
        bundle_name=classifier.bundle.manifest.name,
        labels_from_manifest=classifier.labels_from_manifest,
        background_ids=classifier.background.ids,
        images=findings,
        report=Path(options.out) / "report.html",
    )
    write_image_report(result)
    return result


def _scores(top: Sequence[ClassScore]) -> list[dict[str, object]]:
    return [{"label": c.label, "index": c.index, "probability": c.probability} for c in top]


def _top_half_shares(view: Explained) -> list[float]:
    """Per top class: the share of its positive attribution in the image's top half."""
    from explain.occlusion import top_share

    return [float(v) for v in top_share(view.maps)]


def figure_name(image: int, variant: str | None = None) -> str:
    """The PNG of one row of the report: the image (or its masked variant) and one map per class."""
    return f"figures/image_{image:03d}{'' if variant is None else '_' + variant.replace(' ', '_')}.png"


def image_audit_json(result: ImageAuditResult) -> dict[str, object]:
    """What `car explain-image --json` prints (and `image_audit.json` holds)."""
    images = []
    occlusion = []
    for i, f in enumerate(result.images):
        images.append(
            {
                "image": str(f.path),
                "top": _scores(f.original.top),
                "maps": {
                    "png": figure_name(i),
                    "scale": f.scale,
                    "classes": [c.label for c in f.original.top],
                    "top_half_share": _top_half_shares(f.original),
                },
            }
        )
        for m in f.masked:
            occlusion.append(
                {
                    "image": str(f.path),
                    "half": m.half,
                    "fill": m.fill,
                    "top": _scores(m.view.top),
                    "top1_changed": m.top1_changed,
                    "maps": {
                        "png": figure_name(i, f"{m.half} {m.fill}"),
                        "scale": f.scale,
                        "classes": [c.label for c in m.view.top],
                        "top_half_share": _top_half_shares(m.view),
                    },
                }
            )
    return {
        "model": result.bundle_name,
        "method": result.options.method,
        "labels_from_manifest": result.labels_from_manifest,
        "background": {"spec": result.options.background, "ids": list(result.background_ids)},
        "images": images,
        "occlusion": occlusion,
        "report": str(result.report),
    }
