"""`car baseline DIR`: the published intensity-threshold baseline on a folder of labelled frames.

Prints accuracy, macro precision and recall and the confusion matrix (`--json`: one JSON object with keys
`accuracy`, `precision`, `recall`, `confusion`, `n`, plus `cutoff`, `share`, `folder`, `skipped`).
`--plots DIR` writes `confusion.png` and `intensity_boxplot.png`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from car.errors import CarError
from vision.baseline import DEFAULT_CUTOFF, DEFAULT_SHARE, IntensityBaseline, mean_intensities
from vision.datasets import load_dataset
from vision.labels import LABEL_NAMES
from vision.metrics import ClassificationReport, classification_report


def _cutoff(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer grey level (0..255)") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..255")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction such as 0.065") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a fraction in [0, 1)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", metavar="DIR", type=Path, help="{label}_{id}.jpg files, or free/ + blocked/"
    )
    parser.add_argument(
        "--cutoff", type=_cutoff, default=DEFAULT_CUTOFF, help="grey level ≤ this is dark (default 60)"
    )
    parser.add_argument(
        "--share", type=_share, default=DEFAULT_SHARE, help="dark share above this is STOP (default 0.065)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--plots", type=Path, metavar="DIR", help="write confusion.png and intensity_boxplot.png"
    )
    parser.add_argument("--limit", type=int, help="use only the first N images (sorted by name)")


@dataclass(frozen=True, slots=True)
class BaselineRun:
    report: ClassificationReport
    labels: np.ndarray
    predictions: np.ndarray
    dark_shares: np.ndarray
    intensities: np.ndarray
    skipped: dict[str, int]


def evaluate_folder(
    folder: Path, baseline: IntensityBaseline, limit: int | None = None, progress: bool = True
) -> BaselineRun:
    """Load a folder and score the baseline on it (the function behind the command)."""
    data = load_dataset(folder, progress=progress, limit=limit)
    shares = baseline.dark_shares(data.images)
    predictions = (shares > baseline.share).astype(np.int64)
    return BaselineRun(
        report=classification_report(data.labels, predictions),
        labels=data.labels,
        predictions=predictions,
        dark_shares=shares,
        intensities=mean_intensities(data.images),
        skipped={reason.value: n for reason, n in data.skipped.items()},
    )


def write_plots(run: BaselineRun, baseline: IntensityBaseline, out: Path) -> list[Path]:
    """The confusion matrix and the per-class intensity box plots as PNG files."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise CarError(f"--plots needs matplotlib ({exc}); install it with pip install '.[explain]'") from exc
    out.mkdir(parents=True, exist_ok=True)
    confusion = np.asarray(run.report.confusion)
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(confusion, cmap="Blues")
    for (i, j), value in np.ndenumerate(confusion):
        colour = "white" if value > confusion.max() / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=12)
    ax.set_xticks([0, 1], LABEL_NAMES)
    ax.set_yticks([0, 1], LABEL_NAMES)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(f"intensity baseline: accuracy {run.report.accuracy:.3f}")
    fig.tight_layout()
    confusion_png = out / "confusion.png"
    fig.savefig(confusion_png, dpi=120)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6))
    groups = [run.labels == label for label in (0, 1)]
    left.boxplot([run.intensities[g] for g in groups], tick_labels=list(LABEL_NAMES))
    left.set_ylabel("mean grey level per image")
    left.set_title("image intensity by class")
    right.boxplot([run.dark_shares[g] for g in groups], tick_labels=list(LABEL_NAMES))
    right.axhline(baseline.share, color="red", linestyle="--", label=f"share threshold {baseline.share}")
    right.set_ylabel(f"share of pixels with grey ≤ {baseline.cutoff}")
    right.set_title("dark-pixel share by class")
    right.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    box_png = out / "intensity_boxplot.png"
    fig.savefig(box_png, dpi=120)
    plt.close(fig)
    return [confusion_png, box_png]


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise CarError(f"--limit {args.limit}: must be at least 1")
    baseline = IntensityBaseline(cutoff=args.cutoff, share=args.share)
    result = evaluate_folder(args.folder, baseline, limit=args.limit, progress=not args.json)
    plots = write_plots(result, baseline, args.plots) if args.plots is not None else []
    if args.json:
        payload = result.report.to_dict() | {
            "cutoff": baseline.cutoff,
            "share": baseline.share,
            "folder": str(args.folder),
            "skipped": result.skipped,
        }
        print(json.dumps(payload))
        return 0
    rule = f"grey ≤ {baseline.cutoff} is dark; share > {baseline.share} = STOP"
    print(f"intensity baseline on {args.folder} ({rule})")
    if result.skipped:
        print("skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(result.skipped.items())))
    print(result.report.format_table())
    for path in plots:
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
