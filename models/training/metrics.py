"""The quality figures of each domain, computed the same way in training and in ``eval``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from models.data import FAILURE_MODES, SensorData
from models.taxonomy import RiskTaxonomy

# Macro averages run over the classes present in the truth or the predictions (sklearn's
# default), so a small file without some class is not charged a zero for it.


def sentiment_metrics(
    probabilities: np.ndarray, labels: Sequence[str], truth: Sequence[str]
) -> dict:
    """``probabilities`` has one column per entry of ``labels``."""
    predicted = [labels[i] for i in probabilities.argmax(1)]
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
        "n": len(truth),
    }


def ticket_metrics(
    probabilities: np.ndarray,
    labels: Sequence[str],
    truth: Sequence[str],
    taxonomy: RiskTaxonomy,
) -> dict:
    predicted = [labels[i] for i in probabilities.argmax(1)]
    true_levels = [taxonomy.level_of_intent(t) for t in truth]
    predicted_levels = [
        taxonomy.level_of_score(taxonomy.risk_score(labels, row.tolist())) for row in probabilities
    ]
    return {
        "intent_accuracy": float(accuracy_score(truth, predicted)),
        "intent_macro_f1": float(f1_score(truth, predicted, average="macro")),
        "risk_accuracy": float(accuracy_score(true_levels, predicted_levels)),
        "risk_macro_f1": float(f1_score(true_levels, predicted_levels, average="macro")),
        "n": len(truth),
    }


def sensor_metrics(failure_probability: np.ndarray, threshold: float, truth: Sequence[int]) -> dict:
    predicted = (failure_probability >= threshold).astype(int)
    both_classes = len(set(truth)) == 2
    return {
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision_score(truth, predicted, zero_division=0)),
        "recall": float(recall_score(truth, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(truth, failure_probability)) if both_classes else None,
        "threshold": threshold,
        "n": len(truth),
    }


def best_f1_threshold(failure_probability: np.ndarray, truth: Sequence[int]) -> float:
    """The decision threshold with the highest F1 on these rows, midway between two scores."""
    order = np.argsort(-failure_probability, kind="stable")
    ranked = failure_probability[order]
    hits = np.cumsum(np.asarray(truth)[order])
    positives = hits[-1] if len(hits) else 0
    if positives == 0 or len(ranked) < 2:
        return 0.5
    # Flagging the top k rows gives F1 = 2 TP / (k + P); only cuts between distinct scores count.
    f1 = 2 * hits / (np.arange(1, len(ranked) + 1) + positives)
    cuttable = np.append(ranked[:-1] > ranked[1:], True)
    k = int(np.argmax(np.where(cuttable, f1, -1.0)))
    return float((ranked[k] + ranked[k + 1]) / 2) if k + 1 < len(ranked) else float(ranked[k] / 2)


def failure_mode_metrics(
    failure_probability: np.ndarray,
    mode_probability: np.ndarray,
    threshold: float,
    failure: Sequence[int],
    modes: Sequence[Sequence[str]],
    mode_names: Sequence[str],
) -> dict:
    """Whether the predicted failure mode is right where it matters, on the true failures
    whose mode is known. A row counts as right when it is flagged (probability at or above
    ``threshold``) and its predicted mode (the argmax of ``mode_probability`` (n, 5), in
    ``mode_names`` order) is one of its true modes. ``mode_accuracy``: the share of those
    failures that are right; ``mode_recall``: the same share per true mode (a row with two
    modes counts under both); ``mode_accuracy_given_flag``: the share right among the flagged."""
    predicted = [mode_names[i] for i in np.asarray(mode_probability).argmax(1)]
    flagged = np.asarray(failure_probability) >= threshold
    rows = [i for i, (f, m) in enumerate(zip(failure, modes, strict=True)) if f and m]
    right = {i: bool(flagged[i]) and predicted[i] in modes[i] for i in rows}
    recall = {}
    for name in mode_names:
        having = [i for i in rows if name in modes[i]]
        if having:
            recall[name] = {"n": len(having), "recall": sum(right[i] for i in having) / len(having)}
    caught = [i for i in rows if flagged[i]]
    return {
        "mode_accuracy": sum(right.values()) / len(rows) if rows else None,
        "mode_accuracy_given_flag": (
            sum(right[i] for i in caught) / len(caught) if caught else None
        ),
        "mode_recall": recall,
        "failures_with_mode": len(rows),
    }


def sensor_figures(
    failure_probability: np.ndarray,
    mode_probability: np.ndarray,
    threshold: float,
    data: SensorData,
) -> dict:
    """``sensor_metrics`` and ``failure_mode_metrics`` of predictions on ``data``'s rows."""
    return {
        **sensor_metrics(failure_probability, threshold, data.failure),
        **failure_mode_metrics(
            failure_probability,
            mode_probability,
            threshold,
            data.failure,
            data.modes,
            FAILURE_MODES,
        ),
    }
