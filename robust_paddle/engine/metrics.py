"""Classification metrics over collected predictions (sklearn does the arithmetic)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

from robust_paddle.errors import DataError


def classification_metrics(labels: np.ndarray, preds: np.ndarray, *, num_classes: int) -> dict:
    """Accuracy, macro-F1, per-class recall and the confusion matrix.

    Args:
        labels: [N] int true labels.
        preds: [N] int predicted labels.
        num_classes: C; classes absent from ``labels`` get recall 0 with no warning.

    Returns:
        {"acc": float, "macro_f1": float, "per_class_recall": [C] list, "confusion": [C][C] list}
    """
    labels = np.asarray(labels).reshape(-1)
    preds = np.asarray(preds).reshape(-1)
    if labels.shape != preds.shape:
        raise DataError(f"labels {labels.shape} and preds {preds.shape} differ in shape")
    classes = list(range(num_classes))
    if labels.size == 0:
        raise DataError("cannot compute metrics on an empty set")
    return {
        "acc": float((labels == preds).mean()),
        "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0)),
        "per_class_recall": recall_score(labels, preds, labels=classes, average=None, zero_division=0).tolist(),
        "confusion": confusion_matrix(labels, preds, labels=classes).tolist(),
    }
