"""`car eval BUNDLE DATA [--runtime torch|onnx|onnx-int8] [--json]`: a bundle's accuracy on a folder of
frames, with the intensity baseline's numbers on the same frames beside it.

The network's numbers have the keys of `car baseline --json` (accuracy, precision, recall, confusion, n);
the baseline's sit under "baseline". Predictions use the bundle's threshold: STOP where P(STOP) > threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vision.bundle import ModelBundle
from vision.metrics import ClassificationReport

RUNTIME_CHOICES = {"torch": "torch", "onnx": "fp32", "onnx-int8": "int8"}
"""CLI name -> `vision.detector` runtime registry name."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    bundle: str
    bundle_sha256: str
    runtime: str
    data: str
    network: ClassificationReport
    baseline: ClassificationReport | None
    baseline_note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            **self.network.to_dict(),
            "bundle": self.bundle,
            "bundle_sha256": self.bundle_sha256,
            "runtime": self.runtime,
            "data": self.data,
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "baseline_note": self.baseline_note,
        }

    def format_table(self) -> str:
        lines = [f"{self.bundle} ({self.runtime}) on {self.data}", self.network.format_table()]
        if self.baseline is not None:
            lines += ["", "intensity baseline on the same frames:", self.baseline.format_table()]
        elif self.baseline_note:
            lines += ["", f"baseline: {self.baseline_note}"]
        return "\n".join(lines)


def predict_labels(
    bundle: ModelBundle, images: np.ndarray, runtime: str = "onnx", threads: int = 1, batch: int = 32
) -> np.ndarray:
    """Labels (0 GO, 1 STOP) for RGB uint8 N×S×S×3 frames, through the bundle's preprocessing."""
    from vision.detector import build_detector, stop_decisions
    from vision.preprocess import to_network_input

    detector = build_detector(bundle, RUNTIME_CHOICES[runtime], threads)
    prep = bundle.manifest.preprocessing
    probs = [
        detector.predict(to_network_input(images[i : i + batch], prep)) for i in range(0, len(images), batch)
    ]
    return stop_decisions(np.concatenate(probs), bundle.manifest.threshold)


def baseline_report(images: np.ndarray, labels: np.ndarray) -> ClassificationReport:
    """The published intensity baseline (default cutoff and share) on the same decoded frames."""
    from vision.baseline import IntensityBaseline
    from vision.metrics import classification_report

    return classification_report(labels, IntensityBaseline().predict_batch(images))


def evaluate(
    bundle_path: str | Path,
    data: str | Path,
    *,
    runtime: str = "onnx",
    threads: int = 1,
    with_baseline: bool = True,
    progress: bool = False,
) -> Evaluation:
    from vision.bundle import load_bundle
    from vision.datasets import load_dataset
    from vision.metrics import classification_report

    bundle = load_bundle(bundle_path)
    dataset = load_dataset(data, size=bundle.manifest.preprocessing.input_size, progress=progress)
    predictions = predict_labels(bundle, dataset.images, runtime, threads)
    report = classification_report(dataset.labels, predictions)
    baseline = baseline_report(dataset.images, dataset.labels) if with_baseline else None
    return Evaluation(
        bundle=str(bundle.root),
        bundle_sha256=bundle.sha256,
        runtime=runtime,
        data=str(data),
        network=report,
        baseline=baseline,
        baseline_note="" if with_baseline else "skipped (--no-baseline)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="model bundle folder (e.g. models/edge-sim)")
    parser.add_argument("data", type=Path, help="folder of frames ({label}_{id}.jpg, or free/ + blocked/)")
    parser.add_argument("--runtime", choices=tuple(RUNTIME_CHOICES), default="onnx", help="default: onnx")
    parser.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the intensity baseline")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")


def run(args: argparse.Namespace) -> int:
    result = evaluate(
        args.bundle,
        args.data,
        runtime=args.runtime,
        threads=args.threads,
        with_baseline=not args.no_baseline,
        progress=not args.json and sys.stderr.isatty(),
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.format_table())
    return 0
