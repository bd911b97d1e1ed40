"""Evaluating a model on labeled rows of its domain, with the figures of ``models.metrics``."""

from __future__ import annotations

from pathlib import Path

from models.data import NEWS_LABELS, SensorData, TextData, read_sensors, read_text
from models.loading import LoadedScorer
from models.metrics import news_metrics, sensor_figures, ticket_metrics
from models.scorers import NewsScorer, SensorScorer, TicketScorer


def evaluate(scorer: LoadedScorer, data: Path) -> dict:
    """The scorer's figures on the labeled CSV at ``data`` (see ``evaluate_data``)."""
    if isinstance(scorer, SensorScorer):
        return evaluate_data(scorer, read_sensors(data))
    labels = scorer.taxonomy.intents if isinstance(scorer, TicketScorer) else NEWS_LABELS
    return evaluate_data(scorer, read_text(data, scorer.domain, tuple(labels)))


def evaluate_data(scorer: LoadedScorer, data: TextData | SensorData) -> dict:
    """The scorer's figures on ``data`` (news: accuracy, macro_f1; tickets: intent_accuracy,
    risk_macro_f1; sensors: f1, precision, recall, roc_auc and the failure-mode figures),
    plus model name and version."""
    if isinstance(scorer, SensorScorer):
        if not isinstance(data, SensorData):
            raise TypeError("a sensors model is evaluated on SensorData")
        failure, modes = scorer.predict_proba(data.readings)
        metrics = sensor_figures(failure, modes, scorer.engine.threshold, data)
    elif not isinstance(data, TextData):
        raise TypeError(f"a {scorer.domain} model is evaluated on TextData")
    elif isinstance(scorer, TicketScorer):
        probabilities = scorer.predict_proba(data.texts)
        metrics = ticket_metrics(probabilities, scorer.labels, data.labels, scorer.taxonomy)
    else:
        assert isinstance(scorer, NewsScorer)
        metrics = news_metrics(scorer.predict_proba(data.texts), NEWS_LABELS, data.labels)
    return {
        "domain": scorer.domain,
        "model": scorer.model_name,
        "version": scorer.version,
        **metrics,
    }
