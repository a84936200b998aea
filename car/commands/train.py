"""`car train DATA [DATA ...] [--arch NAME] [--init FILE|BUNDLE] --out models/NAME`: train into a bundle.

Several DATA folders are one training set (e.g. a `car sim dataset` folder plus a `car sim collect` folder),
read in place: nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vision.architectures import names
from vision.augment import SHARE_AUGMENTATIONS

if TYPE_CHECKING:
    from vision.preprocess import Preprocessing

from car.errors import CarError
from vision.labels import GO, STOP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        type=Path,
        nargs="+",
        help="folder(s) of frames ({label}_{id}.jpg, or free/ + blocked/); several are trained on together",
    )
    parser.add_argument(
        "--arch", choices=names(), default=None, help="network (default: edge, or the --init bundle's)"
    )
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
    for augmentation in SHARE_AUGMENTATIONS.values():
        parser.add_argument(augmentation.flag, type=float, default=0.0, metavar="P", help=augmentation.help)
    parser.add_argument("--json", action="store_true", help="print the epoch history and metrics as JSON")
    add_transfer_arguments(parser)


def add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    """Warm start and input size (README "Transfer learning")."""
    from vision.transfer import FREEZES

    parser.add_argument(
        "--init",
        default=None,
        help="start from local weights: a bundle folder (e.g. models/edge-sim) or a torch state_dict "
        "file (e.g. an ImageNet checkpoint you have); a head of another size is re-initialised",
    )
    parser.add_argument(
        "--freeze",
        choices=sorted(FREEZES),
        default=None,
        help="keep part of the --init weights fixed: stem = the first convolution (+ its BatchNorm), "
        "backbone = everything but the last Linear",
    )
    parser.add_argument(
        "--size", type=int, default=None, help="input side (default: the --init bundle's, else 224)"
    )


def resolve_start(args: argparse.Namespace) -> tuple[str, Preprocessing]:
    """The architecture and preprocessing: as given, else the --init bundle's, else edge at 224."""
    from dataclasses import replace

    from vision.bundle import MANIFEST_NAME, load_bundle
    from vision.preprocess import Preprocessing

    arch, prep = args.arch, Preprocessing()
    init = Path(args.init) if getattr(args, "init", None) else None
    if init is not None and (init.is_dir() or init.name == MANIFEST_NAME):
        manifest = load_bundle(init).manifest
        arch, prep = arch or manifest.arch, manifest.preprocessing
    if getattr(args, "size", None) is not None:
        prep = replace(prep, input_size=args.size)
    return arch or "edge", prep


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
    arch, prep = resolve_start(args)
    config = TrainConfig(
        arch=arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        augment=not args.no_augment,
        shares={name: getattr(args, f"{name}_augment", 0.0) for name in SHARE_AUGMENTATIONS},
        threads=args.threads,
        progress=not args.json,
        init=getattr(args, "init", None),
        freeze=getattr(args, "freeze", None),
    )
    command = "car train " + " ".join(shlex.quote(str(a)) for a in _cli_args(args))
    result, bundle = train_to_bundle(
        args.data, args.out, config, int8=not args.no_int8, limit=args.limit, prep=prep, command=command
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
    arch = ["--arch", str(args.arch)] if args.arch else []
    return [*map(str, folders), *arch, "--out", str(args.out), "--epochs", str(args.epochs)]
