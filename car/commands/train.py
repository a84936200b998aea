"""`car train DATA [DATA ...] --arch {seed,edge} --out models/NAME`: train a GO/STOP network into a bundle.

Several DATA folders are one training set (e.g. a `car sim dataset` folder plus a `car sim collect` folder),
read in place: nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from car.errors import CarError
from vision.labels import GO, STOP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        type=Path,
        nargs="+",
        help="folder(s) of frames ({label}_{id}.jpg, or free/ + blocked/); several are trained on together",
    )
    parser.add_argument("--arch", choices=("seed", "edge"), default="edge", help="network (default: edge)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write, e.g. models/NAME")
    parser.add_argument("--epochs", type=int, default=20, help="epochs (default 20; the best is kept)")
    parser.add_argument("--seed", type=int, default=0, help="seed of init, split, shuffle, augmentation")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    parser.add_argument(
        "--limit", type=int, default=None, help="use a seeded random N of the frames (of all folders)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-int8", action="store_true", help="skip the INT8 model")
    parser.add_argument("--no-augment", action="store_true", help="train without ColorJitter")
    parser.add_argument("--json", action="store_true", help="print the epoch history and metrics as JSON")


def check_both_classes(folders: list[Path]) -> None:
    """Refuse a training set with one class only: the network would learn to always answer it, and the
    validation accuracy (100 %) would say nothing. Checked from the file names, before anything loads."""
    from vision.datasets import scan_folders
    from vision.labels import label_name

    scans = scan_folders(folders)
    n_go = sum(scan.label_counts()[0] for scan in scans)
    n_stop = sum(scan.label_counts()[1] for scan in scans)
    if n_go and n_stop:
        return
    names = ", ".join(str(scan.root) for scan in scans)
    if not n_go and not n_stop:
        raise CarError(
            f"{names}: no usable frames ({{label}}_{{id}}.jpg or free/ + blocked/); nothing to train"
        )
    only, missing = (GO, STOP) if n_go else (STOP, GO)
    raise CarError(
        f"{names}: every frame is {label_name(only)} ({n_go + n_stop} frames); a GO/STOP network needs "
        f"both classes: add {label_name(missing)} frames (e.g. another folder, or `car sim dataset`)"
    )


def run(args: argparse.Namespace) -> int:
    from vision.training import TrainConfig, train_to_bundle

    check_both_classes(list(args.data) if isinstance(args.data, list | tuple) else [args.data])
    config = TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        augment=not args.no_augment,
        threads=args.threads,
        progress=not args.json,
    )
    command = "car train " + " ".join(shlex.quote(str(a)) for a in _cli_args(args))
    result, bundle = train_to_bundle(
        args.data, args.out, config, int8=not args.no_int8, limit=args.limit, command=command
    )
    metrics = bundle.manifest.metrics
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(bundle.root),
                    "sha256": bundle.sha256,
                    "best_epoch": result.best_epoch,
                    "history": [
                        {
                            "epoch": s.epoch,
                            "train_loss": s.train_loss,
                            "val_loss": s.val_loss,
                            "val_accuracy": s.val_accuracy,
                        }
                        for s in result.history
                    ],
                    "val_accuracy": metrics.val_accuracy,
                    "int8_accuracy_delta": metrics.int8_accuracy_delta,
                },
                indent=2,
            )
        )
    else:
        print(
            f"wrote {bundle.root} (arch {bundle.manifest.arch}, best epoch {result.best_epoch}, "
            f"val_loss {metrics.val_loss:.4f}, val_acc {metrics.val_accuracy:.4f}, "
            f"onnx parity {metrics.onnx_parity_max_abs:.1e}"
            + (
                f", INT8 Δacc {metrics.int8_accuracy_delta:+.4f}"
                if metrics.int8_accuracy_delta is not None
                else ""
            )
            + ")"
        )
    return 0


def _cli_args(args: argparse.Namespace) -> list[str]:
    """The options that made this bundle, for the manifest (so the README's command can be checked)."""
    argv = sys.argv
    if "train" in argv:
        return argv[argv.index("train") + 1 :]
    folders = args.data if isinstance(args.data, list | tuple) else [args.data]
    return [*map(str, folders), "--arch", args.arch, "--out", str(args.out), "--epochs", str(args.epochs)]
