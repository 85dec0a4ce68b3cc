import numpy as np
import pytest

from abawkit.labels import CLASSES, IGNORE, class_counts, class_index, class_name, one_hot
from abawkit.metrics import f1_report, macro_f1, macro_f1_from_confusion


def test_class_order_is_the_official_one():
    assert CLASSES == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
    assert class_index("happiness") == 4 and class_index("7") == 7 and class_name(2) == "Disgust"
    with pytest.raises(ValueError, match="unknown class"):
        class_index("Contempt")
    with pytest.raises(ValueError, match="outside"):
        class_index(8)


def test_counts_and_one_hot_skip_ignored_frames():
    assert class_counts([0, 0, 4, IGNORE, 7]).tolist() == [2, 0, 0, 0, 1, 0, 0, 1]
    oh = one_hot([1, IGNORE])
    assert oh[0, 1] == 1 and oh[1].sum() == 0


def test_perfect_prediction_of_all_classes_scores_one():
    y = np.arange(8).repeat(3)
    assert macro_f1(y, y) == pytest.approx(1.0)


def test_absent_classes_count_as_zero():
    # Only classes 0 and 4 appear, both predicted perfectly: 2 of 8 classes have F1 1, the rest 0.
    y = np.array([0, 0, 4, 4])
    assert macro_f1(y, y) == pytest.approx(2 / 8)


def test_hand_computed_case_with_ignored_frames():
    y_true = np.array([0, 0, 0, 1, 1, IGNORE, IGNORE])
    y_pred = np.array([0, 0, 1, 1, 0, 3, 3])
    # class 0: tp 2, fp 1, fn 1 -> F1 2/3; class 1: tp 1, fp 1, fn 1 -> 1/2; the ignored frames never count.
    rep = f1_report(y_true, y_pred)
    assert rep.per_class_f1[0] == pytest.approx(2 / 3)
    assert rep.per_class_f1[1] == pytest.approx(1 / 2)
    assert rep.per_class_f1[3] == 0.0
    assert rep.macro_f1 == pytest.approx((2 / 3 + 1 / 2) / 8)
    assert rep.n_frames == 5
    assert rep.confusion[0].tolist()[:2] == [2, 1] and rep.confusion.sum() == 5
    assert "macro F1 (P_EXPR) = 0.1458" in rep.format()


def test_invalid_predictions_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        f1_report(np.array([0, 1]), np.array([0, 8]))
    with pytest.raises(ValueError, match="frames"):
        f1_report(np.array([0, 1]), np.array([0]))


def test_pooled_confusion_scores_the_concatenated_frames():
    rng = np.random.default_rng(0)
    parts = [(rng.integers(0, 6, n), rng.integers(0, 8, n)) for n in (50, 80, 7)]  # classes 6, 7 never true
    pooled = sum(f1_report(y, p).confusion for y, p in parts)
    y, p = (np.concatenate(a) for a in zip(*parts))
    assert macro_f1_from_confusion(pooled) == pytest.approx(macro_f1(y, p))
    assert macro_f1_from_confusion(np.zeros((8, 8))) == 0.0
