"""Training a GO/STOP network, as published: 80/20 split, ColorJitter + ImageNet normalisation, BCE on the
two sigmoid outputs against one-hot targets, Adam, and the epoch with the lowest validation loss kept.

Frames enter as RGB uint8 at the input size and go through `vision.preprocess.to_network_input` — the same
function the car, replay and explanation use — after augmentation. Deterministic for a seed: the weights'
initialisation (torch.manual_seed), the split, the shuffling and the augmentation (numpy Generators derived
from the seed) are all drawn from it.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vision.augment import Augmentations, check_shares, training_augmentations
from vision.bundle import BundleMetrics, ModelBundle, TrainingDataSummary
from vision.errors import VisionError
from vision.labels import STOP
from vision.networks import build_network
from vision.preprocess import Preprocessing, to_network_input


@dataclass(frozen=True, slots=True)
class TrainConfig:
    arch: str = "edge"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.2
    augment: bool = True
    shares: Mapping[str, float] = field(default_factory=dict)
    """Share augmentations by name (`vision.augment.SHARE_AUGMENTATIONS`: room, tone, sensor) → share of
    training images given them; absent or 0: off."""
    threads: int | None = None
    progress: bool = True
    init: str | None = None
    """Warm start: a bundle folder or a state_dict file (`vision.transfer`); None trains from scratch."""
    freeze: str | None = None
    """Part kept as initialised: "stem" or "backbone" (`vision.transfer.FREEZES`); needs `init`."""

    def validate(self) -> None:
        if self.epochs < 1:
            raise VisionError(f"--epochs {self.epochs}: must be at least 1")
        if self.batch_size < 1:
            raise VisionError(f"--batch-size {self.batch_size}: must be at least 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise VisionError(f"val_fraction={self.val_fraction}: must lie strictly between 0 and 1")
        if not self.learning_rate > 0:
            raise VisionError(f"--lr {self.learning_rate}: must be positive")
        try:
            check_shares(self.shares)
        except ValueError as exc:
            raise VisionError(str(exc)) from None
        if self.freeze is not None and self.init is None:
            raise VisionError(f"--freeze {self.freeze}: needs --init (frozen random weights learn nothing)")

    def augmentations(self) -> Augmentations:
        """The augmentation steps these settings train with (the manifest records their description)."""
        return training_augmentations(self.augment, self.shares)


@dataclass(frozen=True, slots=True)
class Split:
    train: np.ndarray
    val: np.ndarray


@dataclass(frozen=True, slots=True)
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True, slots=True)
class TrainResult:
    network: nn.Module
    """The weights of the best epoch (lowest validation loss), in eval mode."""
    history: tuple[EpochStats, ...]
    best_epoch: int
    split: Split

    @property
    def best(self) -> EpochStats:
        return self.history[self.best_epoch - 1]


def split_indices(n: int, val_fraction: float, seed: int) -> Split:
    """A seeded random 80/20 (by default) split of n items; both parts non-empty."""
    if n < 2:
        raise VisionError(f"need at least 2 frames to split into training and validation, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return Split(train=np.sort(order[n_val:]), val=np.sort(order[:n_val]))


def one_hot(labels: np.ndarray) -> torch.Tensor:
    """(GO, STOP) targets for the two sigmoid outputs."""
    targets = np.zeros((len(labels), 2), np.float32)
    targets[np.arange(len(labels)), labels.astype(np.int64)] = 1.0
    return torch.from_numpy(targets)


def _batches(indices: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def evaluate_loss(
    network: nn.Module, images: np.ndarray, labels: np.ndarray, prep: Preprocessing, batch_size: int = 64
) -> tuple[float, float]:
    """(mean BCE loss, accuracy at P(STOP) > 0.5) of `network` on un-augmented frames."""
    loss_fn = nn.BCELoss(reduction="sum")
    network.eval()
    total, correct = 0.0, 0
    with torch.inference_mode():
        for idx in _batches(np.arange(len(images)), batch_size):
            probs = network(torch.from_numpy(to_network_input(images[idx], prep)))
            total += float(loss_fn(probs, one_hot(labels[idx])))
            correct += int(((probs[:, STOP] > 0.5).numpy().astype(np.int64) == labels[idx]).sum())
    return total / (2 * len(images)), correct / len(images)


EpochCallback = Callable[[EpochStats], None]


def check_arch(arch: str, prep: Preprocessing) -> None:
    """`arch` is registered and can be trained at this input side with (GO, STOP) sigmoid outputs."""
    from vision.architectures import arch_spec
    from vision.labels import LABEL_NAMES

    try:
        found = arch_spec(arch).problems(LABEL_NAMES, "sigmoid", prep.input_size)
    except ValueError as exc:
        raise VisionError(f"--arch: {exc}") from None
    if found:
        raise VisionError(f"--arch {arch}: {'; '.join(found)}")


def initial_network(config: TrainConfig, prep: Preprocessing) -> nn.Module:
    """The network training starts from (seeded: random, or `config.init`'s weights), said on stderr."""
    check_arch(config.arch, prep)
    torch.manual_seed(config.seed)
    network = build_network(config.arch)
    how = "random initialisation" if config.init is None else _warm_start(network, config)
    if config.progress:
        print(f"train {config.arch}: {how}", file=sys.stderr)
    return network


def _warm_start(network: nn.Module, config: TrainConfig) -> str:
    """Load `config.init` into `network` (and freeze `config.freeze`); a line saying what happened."""
    from vision.transfer import apply_init, freeze, read_init

    assert config.init is not None
    source = read_init(config.init)
    if source.arch is not None and source.arch != config.arch:
        raise VisionError(f"--init {config.init} is a {source.arch!r} bundle, but --arch is {config.arch!r}")
    report = apply_init(network, source)
    if config.freeze is not None:
        report = replace(report, frozen=freeze(network, config.freeze))
    return f"--init {config.init}: {report.describe()}"


def _train_mode(network: nn.Module) -> None:
    from vision.transfer import keep_frozen_batchnorm_in_eval

    network.train()
    keep_frozen_batchnorm_in_eval(network)


def train_network(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    prep: Preprocessing | None = None,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a fresh `config.arch` network on RGB uint8 N×S×S×3 frames with labels 0 (GO) / 1 (STOP)."""
    config.validate()
    prep = prep or Preprocessing()
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[1:] != (prep.input_size,) * 2 + (3,):
        raise VisionError(
            f"training frames must be RGB uint8 N×{prep.input_size}×{prep.input_size}×3, got "
            f"{images.dtype} {images.shape}; load them with vision.datasets.load_dataset"
        )
    if len(labels) != len(images):
        raise VisionError(f"{len(labels)} labels for {len(images)} frames")
    if config.threads:
        torch.set_num_threads(config.threads)
    network = initial_network(config, prep)
    split = split_indices(len(images), config.val_fraction, config.seed)
    shuffle_rng = np.random.default_rng([config.seed, 1])
    augment_rng = np.random.default_rng([config.seed, 2])
    augment = config.augmentations()
    optimiser = torch.optim.Adam(
        [p for p in network.parameters() if p.requires_grad], lr=config.learning_rate
    )
    loss_fn = nn.BCELoss()
    val_images, val_labels = images[split.val], labels[split.val]

    history: list[EpochStats] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_loss = float("inf")
    bar = tqdm(
        total=config.epochs * len(split.train),
        unit="img",
        desc=f"train {config.arch}",
        disable=not config.progress,
    )
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        _train_mode(network)
        running, seen = 0.0, 0
        for idx in _batches(shuffle_rng.permutation(split.train), config.batch_size):
            batch = augment.batch(images[idx], augment_rng)
            x = torch.from_numpy(to_network_input(batch, prep))
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(network(x), one_hot(labels[idx]))
            loss.backward()
            optimiser.step()
            running += loss.item() * len(idx)
            seen += len(idx)
            bar.update(len(idx))
        val_loss, val_acc = evaluate_loss(network, val_images, val_labels, prep)
        stats = EpochStats(epoch, running / seen, val_loss, val_acc, time.perf_counter() - started)
        history.append(stats)
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = copy.deepcopy(network.state_dict())
        if config.progress:
            bar.set_postfix(train_loss=f"{stats.train_loss:.4f}", val_loss=f"{val_loss:.4f}")
            bar.write(
                f"epoch {epoch:>3}/{config.epochs}  train_loss {stats.train_loss:.4f}"
                f"  val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  {stats.seconds:.0f}s"
                + ("  *best" if best_loss == val_loss else "")
            )
        if on_epoch is not None:
            on_epoch(stats)
    bar.close()
    assert best_state is not None  # at least one epoch ran, and a finite loss is < inf
    network.load_state_dict(best_state)
    network.eval()
    best_epoch = min(history, key=lambda s: (s.val_loss, s.epoch)).epoch
    return TrainResult(network=network, history=tuple(history), best_epoch=best_epoch, split=split)


DataFolders = str | Path | Sequence[str | Path]
"""One data folder, or several trained on together (`car train DATA [DATA ...]`)."""


def data_folders(data: DataFolders) -> tuple[Path, ...]:
    """`data` as a tuple of folders (a single path stays a single folder)."""
    if isinstance(data, str | Path):
        return (Path(data),)
    return tuple(Path(d) for d in data)


def train_to_bundle(
    data: DataFolders,
    out: str | Path,
    config: TrainConfig,
    *,
    int8: bool = True,
    limit: int | None = None,
    prep: Preprocessing | None = None,
    command: str = "",
) -> tuple[TrainResult, ModelBundle]:
    """`car train`: load one or more folders of frames, train, and write a complete bundle (ONNX, INT8,
    weights). Several folders are one training set (in the order given), split 80/20 as a whole; the
    bundle's data summary lists every folder with its counts.

    Parity and INT8 calibration use the validation frames: real frames the network did not train on.
    """
    from vision.datasets import load_folders, scan_folders
    from vision.export import LabelledFrames, build_bundle

    prep = prep or Preprocessing()
    folders = data_folders(data)
    if config.progress:
        for scan in scan_folders(folders):
            print(scan.summary(), file=sys.stderr)
    frames = load_folders(folders, prep.input_size, limit=limit, seed=config.seed, progress=config.progress)
    images, labels = frames.images, frames.labels
    result = train_network(images, labels, config, prep)
    n_stop = int((labels == STOP).sum())
    summary = TrainingDataSummary(
        source=frames.describe(),
        n_total=len(labels),
        n_go=len(labels) - n_stop,
        n_stop=n_stop,
        n_train=len(result.split.train),
        n_val=len(result.split.val),
        seed=config.seed,
        epochs=config.epochs,
        augmentation=config.augmentations().describe(),
        command=command,
    )
    best = result.best
    metrics = BundleMetrics(
        val_loss=best.val_loss, val_accuracy=best.val_accuracy, best_epoch=best.epoch, epochs=config.epochs
    )
    calib = LabelledFrames(images[result.split.val], labels[result.split.val])
    bundle = build_bundle(
        result.network, config.arch, out, calib, int8=int8, prep=prep, metrics=metrics, data=summary
    )
    return result, bundle
