"""Classification metrics of the seed paper (Ciprijanovic et al. 2020, Sec. 4), from scikit-learn.

The paper reports accuracy, precision, recall, F1 score, Brier score and the area under the ROC
curve (AUC) for the merger class (label 1), on the source and the target test sets. All of
them are computed here from the predicted merger probability ``p = softmax(logits)[:, 1]``;
the hard prediction is ``p >= 0.5``.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

METRIC_NAMES: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "brier", "auc")


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def classification_metrics(labels: np.ndarray, prob_merger: np.ndarray) -> dict[str, float | None]:
    """Accuracy, precision, recall, F1, Brier score and ROC AUC for the merger class.

    Args:
        labels: true labels [N], 1 = merger.
        prob_merger: predicted probability of the merger class [N], in [0, 1].

    Returns:
        A dict keyed by ``METRIC_NAMES``. ``auc`` is ``None`` when only one class is present
        (it is undefined then); precision is 0 when nothing is predicted a merger.
    """
    labels = np.asarray(labels).astype(int)
    prob_merger = np.asarray(prob_merger, dtype=np.float64)
    predicted = (prob_merger >= 0.5).astype(int)
    both_classes = np.unique(labels).size == 2
    return {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision": float(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": float(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": float(skm.f1_score(labels, predicted, zero_division=0)),
        "brier": float(skm.brier_score_loss(labels, prob_merger, pos_label=1)),
        "auc": _finite_or_none(skm.roc_auc_score(labels, prob_merger)) if both_classes else None,
    }


def roc_points(labels: np.ndarray, prob_merger: np.ndarray) -> dict[str, list[float]] | None:
    """The ROC curve (false and true positive rates) for the merger class.

    Returns:
        ``{"fpr": [...], "tpr": [...], "thresholds": [...]}`` (thresholds capped at 1 so that
        the file stays valid JSON), or ``None`` when only one class is present.
    """
    labels = np.asarray(labels).astype(int)
    if np.unique(labels).size < 2:
        return None
    fpr, tpr, thresholds = skm.roc_curve(labels, prob_merger, pos_label=1)
    return {
        "fpr": fpr.tolist(),
        "tpr": tpr.tolist(),
        "thresholds": np.minimum(thresholds, 1.0).tolist(),
    }


def mean_entropy(prob_merger: np.ndarray) -> float:
    """Mean binary entropy (nats) of the predicted class probabilities: a label-free signal."""
    p = np.clip(np.asarray(prob_merger, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))
