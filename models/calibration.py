"""Calibrated confidence, and from it an estimate of accuracy that needs no labels.

    from models.calibration import Calibration, calibrated, decision_confidence, fit_calibration

    fit_calibration(probabilities: np.ndarray (n, k), labels: list[str], truth: list[str]) -> dict
    calibrated(probabilities: np.ndarray (n, k), temperature: float) -> np.ndarray (n, k)
    decision_confidence(probabilities: np.ndarray (n, k), temperature: float) -> np.ndarray (n,)
    Calibration.of(metadata: dict) -> Calibration   # what a scorer applies

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017): one
scalar ``T`` divides the logits, fitted by minimising the negative log-likelihood on the
validation split at training time; it changes no prediction, only how sure they are. The
record (``metadata.json`` ``calibration``) keeps ``T`` and the validation accuracy it was
fitted beside.

A calibrated model's mean top-class probability over a window of unlabeled inputs estimates
its accuracy on them (confidence-based performance estimation, as in Hendrycks & Gimpel
2017 and NannyML's CBPE): each result carries that probability as ``confidence``, and the
worker and the retrain triggers average it (``streams.adaptation.triggers``). A model without
a record is scored with ``T = 1`` (its raw softmax) and has no reference accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from models.labels import label_indices

__all__ = ["UNCALIBRATED", "Calibration", "calibrated", "decision_confidence", "fit_calibration"]

# ln T is searched in [-3, 3]: T from 0.05 to 20, far beyond what trained classifiers need.
_LOG_T_BOUNDS = (-3.0, 3.0)
_FLOOR = 1e-12  # probabilities are clipped here before the logarithm


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    # Softmax outputs are logits shifted by a per-row constant, which the softmax ignores.
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _FLOOR, 1.0))


def calibrated(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the class probabilities (n, k) with the temperature applied."""
    return softmax(_log_probabilities(probabilities) / temperature, axis=-1)


def decision_confidence(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The calibrated probability (n,) of each row's predicted (top) class."""
    return calibrated(probabilities, temperature).max(axis=-1)


def _nll(log_p: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(log_p / temperature, axis=-1)[np.arange(len(truth)), truth].mean())


def fit_calibration(
    probabilities: np.ndarray, labels: Sequence[str], truth: Sequence[str]
) -> dict[str, Any]:
    """Fit the temperature on validation rows: ``probabilities`` (n, k) in ``labels`` order,
    ``truth`` the n true labels. Returns the record stored in the model's metadata. Raises
    ValueError on an empty split, DataError (a ValueError) on a true label outside ``labels``."""
    if not len(truth):
        raise ValueError("calibration needs at least one validation row")
    y = label_indices(truth, labels)
    log_p = _log_probabilities(probabilities)
    if np.all(log_p.argmax(-1) == y):
        # With no wrong decision to fit on, the log loss only falls as the temperature does: its
        # minimum is the search's bound, and every later result would read as certain. The raw
        # softmax stands.
        temperature = 1.0
    else:
        found = minimize_scalar(
            lambda log_t: _nll(log_p, y, float(np.exp(log_t))),
            bounds=_LOG_T_BOUNDS,
            method="bounded",
        )
        temperature = float(np.exp(found.x))
    confidence = decision_confidence(probabilities, temperature)
    return {
        "method": "temperature scaling",
        "temperature": round(temperature, 4),
        "rows": len(y),
        "accuracy": float(np.mean(log_p.argmax(-1) == y)),
        "mean_confidence": float(confidence.mean()),
        "nll_before": _nll(log_p, y, 1.0),
        "nll_after": _nll(log_p, y, temperature),
    }


@dataclass(frozen=True)
class Calibration:
    """What a scorer needs of a model's calibration record."""

    temperature: float = 1.0  # 1: the raw softmax
    accuracy: float | None = None  # on the validation rows it was fitted on; None: unknown

    @classmethod
    def of(cls, metadata: dict[str, Any]) -> Calibration:
        """From a model folder's metadata; the defaults when it records none."""
        record = metadata.get("calibration") or {}
        return cls(float(record.get("temperature", 1.0)), record.get("accuracy"))


UNCALIBRATED = Calibration()
