import json

import numpy as np
import pytest

from vision.metrics import ClassificationReport, classification_report, confusion_matrix


def test_confusion_rows_are_truth_columns_prediction() -> None:
    # truth:  GO GO GO STOP STOP
    # pred:   GO STOP GO GO STOP
    assert confusion_matrix([0, 0, 0, 1, 1], [0, 1, 0, 0, 1]) == ((2, 1), (1, 1))


def test_report_numbers_by_hand() -> None:
    report = classification_report([0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0])
    # confusion [[3, 1], [1, 1]]; GO: P = 3/4, R = 3/4; STOP: P = 1/2, R = 1/2
    assert report.confusion == ((3, 1), (1, 1))
    assert report.n == 6
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.precision == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert report.recall == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_macro_precision_differs_from_recall() -> None:
    # confusion [[1, 2], [0, 3]]: GO P=1, R=1/3; STOP P=3/5, R=1
    report = classification_report([0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1])
    assert report.precision == pytest.approx((1 + 3 / 5) / 2)
    assert report.recall == pytest.approx((1 / 3 + 1) / 2)


def test_never_predicted_class_counts_as_zero_precision() -> None:
    report = classification_report(np.array([0, 1, 1]), np.array([1, 1, 1]))
    assert report.per_class()[0] == (0.0, 0.0)
    assert report.precision == pytest.approx((0 + 2 / 3) / 2)


def test_to_dict_is_json_with_the_shared_keys() -> None:
    report = classification_report([0, 1], [0, 1])
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d) == {"accuracy", "precision", "recall", "confusion", "n"}
    assert d["confusion"] == [[1, 0], [0, 1]]
    assert d["accuracy"] == 1.0
    assert isinstance(report, ClassificationReport)
    assert "STOP" in report.format_table()


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [([0, 1], [0], "must match"), ([0, 2], [0, 1], "label 2"), ([], [], "no labels")],
)
def test_bad_input_is_a_clear_error(y_true: list[int], y_pred: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_report(y_true, y_pred)
