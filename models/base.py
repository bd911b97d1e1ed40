"""The contract between the pipeline and the classifiers.

A scorer turns a batch of model inputs into one prediction per input, in order. Text domains
(news, tickets) take strings; sensors take readings. Predictions are plain dicts whose keys
match the columns of the domain's ``*_scores`` ClickHouse table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypedDict

from config.settings import DomainName
from models.calibration import Calibration


class SensorReading(TypedDict):
    machine_type: str  # L, M or H
    air_temp_k: float
    process_temp_k: float
    rpm: float
    torque_nm: float
    tool_wear_min: float


class SentimentPrediction(TypedDict):
    label: str  # negative, neutral or positive
    confidence: float  # calibrated probability that ``label`` is right (models.calibration)
    p_negative: float
    p_neutral: float
    p_positive: float
    sentiment: float  # p_positive - p_negative, in [-1, 1]


class TicketPrediction(TypedDict):
    intent: str
    confidence: float  # calibrated probability that ``intent`` is right
    top_intents: list[str]
    top_probabilities: list[float]
    risk_score: float  # in [0, 1]
    risk_level: str  # low, medium or high


class SensorPrediction(TypedDict):
    failure_probability: float
    failure_mode: str  # none, TWF, HDF, PWF, OSF or RNF
    defect: bool
    confidence: float  # probability that ``defect`` is right: p(failure) if flagged, else 1 - p


Prediction = SentimentPrediction | TicketPrediction | SensorPrediction
ModelInput = str | SensorReading


class Scorer(Protocol):
    """A loaded model version of one domain, ready to score batches."""

    domain: DomainName  # the domain it serves
    task: str  # what it does (models.tasks)
    model_name: str
    version: str
    model_sha256: str  # the content hash of the folder's weights and config (models.registry)
    calibration: Calibration  # what turns its probabilities into each result's confidence

    def score(self, inputs: Sequence[ModelInput]) -> list[Prediction]:
        """Score a batch; blocking, so callers run it off the event loop."""
        ...
