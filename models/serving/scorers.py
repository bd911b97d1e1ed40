"""Scorers: the :class:`models.base.Scorer` of each task over an inference engine.

Each scorer carries the name of the domain it serves (from its model's metadata) and its task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from config.settings import DomainName
from models.base import SensorPrediction, SensorReading, SentimentPrediction, TicketPrediction
from models.calibration import UNCALIBRATED, Calibration, decision_confidence
from models.data import SENTIMENT_LABELS
from models.serving.sensor_inference import SensorEngine
from models.tasks import Task
from models.taxonomy import RiskTaxonomy

if TYPE_CHECKING:  # the text runtime (torch) is imported where a text model is loaded
    from models.serving.inference import TextEngine


class SentimentScorer:
    task: Task = "sentiment"
    model_sha256 = ""  # set by models.serving.loading from the folder

    def __init__(
        self,
        domain: DomainName,
        engine: TextEngine,
        labels: list[str],
        model_name: str,
        version: str,
        calibration: Calibration = UNCALIBRATED,
    ):
        if sorted(labels) != sorted(SENTIMENT_LABELS):
            raise ValueError(f"a sentiment model has the labels {SENTIMENT_LABELS}, not {labels}")
        self.domain = domain
        self.engine = engine
        self.labels = labels
        self.model_name = model_name
        self.version = version
        self.calibration = calibration  # gives ``confidence``; the probabilities stay raw

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in SENTIMENT_LABELS order (negative, neutral, positive)."""
        probabilities = self.engine.predict_proba(texts)
        return probabilities[:, [self.labels.index(label) for label in SENTIMENT_LABELS]]

    def score(self, inputs: Sequence[str]) -> list[SentimentPrediction]:
        probabilities = self.predict_proba(inputs)
        confidence = decision_confidence(probabilities, self.calibration.temperature).tolist()
        predictions = []
        for (neg, neu, pos), sure in zip(probabilities.tolist(), confidence, strict=True):
            label = SENTIMENT_LABELS[int(np.argmax([neg, neu, pos]))]
            predictions.append(
                SentimentPrediction(
                    label=label,
                    confidence=sure,
                    p_negative=neg,
                    p_neutral=neu,
                    p_positive=pos,
                    sentiment=pos - neg,
                )
            )
        return predictions


class TicketScorer:
    task: Task = "intent_risk"
    model_sha256 = ""  # set by models.serving.loading from the folder

    def __init__(
        self,
        domain: DomainName,
        engine: TextEngine,
        labels: list[str],
        taxonomy: RiskTaxonomy,
        model_name: str,
        version: str,
        top_k: int = 3,
        calibration: Calibration = UNCALIBRATED,
    ):
        self.domain = domain
        self.engine = engine
        self.labels = labels
        self.taxonomy = taxonomy
        self.model_name = model_name
        self.version = version
        self.top_k = top_k
        self.calibration = calibration  # gives ``confidence``; the probabilities stay raw

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Intent probabilities in ``self.labels`` order."""
        return self.engine.predict_proba(texts)

    def score(self, inputs: Sequence[str]) -> list[TicketPrediction]:
        probabilities = self.predict_proba(inputs)
        confidence = decision_confidence(probabilities, self.calibration.temperature).tolist()
        predictions = []
        for row, sure in zip(probabilities, confidence, strict=True):
            top = np.argsort(-row)[: self.top_k]
            risk = self.taxonomy.risk_score(self.labels, row.tolist())
            predictions.append(
                TicketPrediction(
                    intent=self.labels[int(top[0])],
                    confidence=sure,
                    top_intents=[self.labels[int(i)] for i in top],
                    top_probabilities=[float(row[i]) for i in top],
                    risk_score=risk,
                    risk_level=self.taxonomy.level_of_score(risk),
                )
            )
        return predictions


class SensorScorer:
    task: Task = "defect"
    model_sha256 = ""  # set by models.serving.loading from the folder

    # The trees' own probabilities, with no validation accuracy to compare an estimate with:
    # a defect flag is right on nearly every reading, failing or not.
    calibration = UNCALIBRATED

    def __init__(self, domain: DomainName, engine: SensorEngine, model_name: str, version: str):
        self.domain = domain
        self.engine = engine
        self.model_name = model_name
        self.version = version

    def predict_proba(self, readings: Sequence[SensorReading]) -> tuple[np.ndarray, np.ndarray]:
        """Failure probabilities (n,) and failure-mode probabilities (n, 5)."""
        return self.engine.predict_proba(readings)

    def score(self, inputs: Sequence[SensorReading]) -> list[SensorPrediction]:
        failure, defects, modes = self.engine.decide(inputs)
        predictions = []
        for p, defect, mode in zip(failure.tolist(), defects.tolist(), modes, strict=True):
            predictions.append(
                SensorPrediction(
                    failure_probability=p,
                    failure_mode=mode,
                    defect=defect,
                    confidence=p if defect else 1.0 - p,
                )
            )
        return predictions
