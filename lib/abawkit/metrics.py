"""The ABAW EXPR metric: unweighted macro F1 over the 8 classes, with per-class F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from .labels import CLASSES, IGNORE, NUM_CLASSES


@dataclass(frozen=True)
class F1Report:
    """Macro F1 (the challenge score), per-class F1 and the confusion matrix (rows truth, columns prediction)."""

    macro_f1: float
    per_class_f1: np.ndarray
    confusion: np.ndarray
    n_frames: int

    def table(self) -> pd.DataFrame:
        """Per-class table: F1, support (true frames), predicted frames."""
        return pd.DataFrame(
            {
                "class": list(CLASSES),
                "f1": self.per_class_f1,
                "support": self.confusion.sum(axis=1),
                "predicted": self.confusion.sum(axis=0),
            }
        )

    def confusion_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.confusion, index=[f"true {c}" for c in CLASSES], columns=list(CLASSES))

    def to_dict(self) -> dict:
        return {
            "macro_f1": self.macro_f1,
            "per_class_f1": {c: float(f) for c, f in zip(CLASSES, self.per_class_f1)},
            "confusion": self.confusion.tolist(),
            "n_frames": self.n_frames,
        }

    def format(self) -> str:
        """Human-readable report: the per-class table, the confusion matrix and the score on the last line."""
        lines = [self.table().to_string(index=False, float_format=lambda v: f"{v:.4f}"), "", "confusion (rows truth, columns prediction):"]
        lines.append(self.confusion_frame().to_string())
        lines.append("")
        lines.append(f"macro F1 (P_EXPR) = {self.macro_f1:.4f} over {self.n_frames} annotated frames")
        return "\n".join(lines)


def f1_report(y_true: np.ndarray, y_pred: np.ndarray) -> F1Report:
    """Score predictions the ABAW way (Kollias et al.): P_EXPR = (1/8) sum_c F1_c over every annotated frame.

    Frames whose truth is ``-1`` are dropped; the F1 of each of the 8 classes comes from scikit-learn with
    ``zero_division=0`` (a class absent from truth and prediction scores 0) and the score is their plain mean.
    """
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"truth has {y_true.size} frames but prediction has {y_pred.size}")
    keep = y_true != IGNORE
    y_true, y_pred = y_true[keep], y_pred[keep]
    bad = (y_pred < 0) | (y_pred >= NUM_CLASSES)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} predictions outside 0..{NUM_CLASSES - 1} (first: {int(y_pred[bad][0])})")
    labels = list(range(NUM_CLASSES))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels) if y_true.size else np.zeros((NUM_CLASSES, NUM_CLASSES), int)
    return F1Report(float(np.mean(per_class)), np.asarray(per_class, dtype=float), cm, int(y_true.size))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The challenge score P_EXPR alone."""
    return f1_report(y_true, y_pred).macro_f1


def macro_f1_from_confusion(confusion: np.ndarray) -> float:
    """P_EXPR from a confusion matrix (rows truth, columns prediction), e.g. a sum of per-fold matrices: the
    pooled score of their frames. F1_c = 2 TP / (2 TP + FP + FN), 0 for a class absent from truth and prediction
    (what :func:`f1_report` gives)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    denom = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))
