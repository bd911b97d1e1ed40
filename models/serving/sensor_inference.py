"""The sensor inference engine: a defect model's trees over batches of readings, on the CPU.

It imports neither torch nor transformers, so a worker that scores sensors alone never loads
them (``models.serving.loading`` imports the text runtime only for a text model).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.base import SensorReading
from models.data import FAILURE_MODES
from models.sensor_model import SensorModel, features


class SensorEngine:
    """Failure probabilities and failure-mode probabilities for sensor readings (trees, on
    the CPU whatever the device: a batch of readings takes a few milliseconds)."""

    def __init__(self, model: SensorModel) -> None:
        self.model = model
        self.threshold = model.threshold

    def predict_proba(self, readings: Sequence[SensorReading]) -> tuple[np.ndarray, np.ndarray]:
        """P(failure) (n,) and failure-mode probabilities (n, 5), in input order."""
        if not readings:
            return np.zeros(0), np.zeros((0, len(FAILURE_MODES)))
        return self.model.predict_proba(features(readings))

    def decide(self, readings: Sequence[SensorReading]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """P(failure) (n,), the defect flags (n,: P(failure) at or over the threshold) and each
        reading's failure mode: the likeliest for a defect, ``"none"`` for the others. The
        mode head, the larger one, runs only where its answer is used."""
        if not readings:
            return np.zeros(0), np.zeros(0, dtype=bool), []
        x = features(readings)
        failure = self.model.failure_probability(x)
        defect = failure >= self.threshold
        over = np.flatnonzero(defect)
        modes = ["none"] * len(readings)
        likeliest = self.model.mode_probabilities(x[over]).argmax(axis=1)
        for row, mode in zip(over.tolist(), likeliest.tolist(), strict=True):
            modes[row] = FAILURE_MODES[mode]
        return failure, defect, modes
