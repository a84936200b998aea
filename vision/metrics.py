"""Binary GO/STOP classification metrics, computed the way the published experiment reported them.

Precision and recall are *macro* averages over the two classes (the published table's numbers), and the
confusion matrix is `[[GO->GO, GO->STOP], [STOP->GO, STOP->STOP]]`: rows are the truth, columns the
prediction. `car baseline` and `car eval` both print `ClassificationReport.to_dict()`, so their JSON has
the same keys.

A class that is never predicted (or never present) has an undefined precision (or recall); like
scikit-learn's `zero_division=0`, it counts as 0 in the macro average, which is the pessimistic choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vision.labels import GO, LABEL_NAMES, STOP

Confusion = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class ClassificationReport:
    """Accuracy, macro precision, macro recall and the 2×2 confusion matrix of n predictions."""

    accuracy: float
    precision: float
    recall: float
    confusion: Confusion
    n: int

    def to_dict(self) -> dict[str, object]:
        """Keys `accuracy`, `precision`, `recall`, `confusion` (list of lists), `n`: the JSON output."""
        return {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "confusion": [list(row) for row in self.confusion],
            "n": self.n,
        }

    def per_class(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(precision, recall) of GO and of STOP, in that order."""
        return (_class_precision_recall(self.confusion, GO), _class_precision_recall(self.confusion, STOP))

    def format_table(self) -> str:
        """A short human-readable summary: the headline numbers and the confusion matrix."""
        (go_p, go_r), (stop_p, stop_r) = self.per_class()
        c = self.confusion
        width = max(len("STOP"), *(len(str(v)) for row in c for v in row)) + 2
        lines = [
            f"n          {self.n}",
            f"accuracy   {self.accuracy:.4f}",
            f"precision  {self.precision:.4f}  (macro; GO {go_p:.4f}, STOP {stop_p:.4f})",
            f"recall     {self.recall:.4f}  (macro; GO {go_r:.4f}, STOP {stop_r:.4f})",
            "confusion  rows = truth, columns = prediction",
            f"           {'':<6}{'GO':>{width}}{'STOP':>{width}}",
            f"           {'GO':<6}{c[0][0]:>{width}}{c[0][1]:>{width}}",
            f"           {'STOP':<6}{c[1][0]:>{width}}{c[1][1]:>{width}}",
        ]
        return "\n".join(lines)


def _class_precision_recall(confusion: Confusion, cls: int) -> tuple[float, float]:
    true_positive = confusion[cls][cls]
    predicted = confusion[0][cls] + confusion[1][cls]
    actual = confusion[cls][0] + confusion[cls][1]
    precision = true_positive / predicted if predicted else 0.0
    recall = true_positive / actual if actual else 0.0
    return precision, recall


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> Confusion:
    """The 2×2 matrix `[[GO->GO, GO->STOP], [STOP->GO, STOP->STOP]]` (rows truth, columns prediction)."""
    truth = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has {truth.size} labels but y_pred has {pred.size}; they must match")
    for name, values in (("y_true", truth), ("y_pred", pred)):
        bad = values[(values != GO) & (values != STOP)]
        if bad.size:
            raise ValueError(f"{name} holds label {int(bad[0])}; labels must be 0 ({LABEL_NAMES[0]}) or 1")
    counts = np.bincount(truth * 2 + pred, minlength=4)
    return ((int(counts[0]), int(counts[1])), (int(counts[2]), int(counts[3])))


def classification_report(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray
) -> ClassificationReport:
    """Accuracy, macro precision/recall and the confusion matrix of GO/STOP predictions."""
    confusion = confusion_matrix(y_true, y_pred)
    n = sum(sum(row) for row in confusion)
    if n == 0:
        raise ValueError("classification_report: no labels given; nothing to score")
    (go_p, go_r), (stop_p, stop_r) = (
        _class_precision_recall(confusion, GO),
        _class_precision_recall(confusion, STOP),
    )
    accuracy = (confusion[0][0] + confusion[1][1]) / n
    return ClassificationReport(
        accuracy=accuracy,
        precision=(go_p + stop_p) / 2,
        recall=(go_r + stop_r) / 2,
        confusion=confusion,
        n=n,
    )
