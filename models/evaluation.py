"""Evaluating a model on a labeled CSV of its domain, with the figures of ``models.metrics``."""

from __future__ import annotations

from pathlib import Path

from models.data import NEWS_LABELS, read_sensors, read_text
from models.loading import LoadedScorer
from models.metrics import news_metrics, sensor_metrics, ticket_metrics
from models.scorers import NewsScorer, SensorScorer, TicketScorer


def evaluate(scorer: LoadedScorer, data: Path) -> dict:
    """The scorer's figures on ``data`` (news: accuracy, macro_f1; tickets: intent_accuracy,
    risk_macro_f1; sensors: f1, precision, recall, roc_auc), plus model name and version."""
    if isinstance(scorer, SensorScorer):
        sensors = read_sensors(data)
        failure, _ = scorer.predict_proba(sensors.readings)
        metrics = sensor_metrics(failure, scorer.engine.threshold, sensors.failure)
    elif isinstance(scorer, TicketScorer):
        text = read_text(data, "tickets", scorer.taxonomy.intents)
        probabilities = scorer.predict_proba(text.texts)
        metrics = ticket_metrics(probabilities, scorer.labels, text.labels, scorer.taxonomy)
    else:
        assert isinstance(scorer, NewsScorer)
        text = read_text(data, "news", NEWS_LABELS)
        metrics = news_metrics(scorer.predict_proba(text.texts), NEWS_LABELS, text.labels)
    return {
        "domain": scorer.domain,
        "model": scorer.model_name,
        "version": scorer.version,
        **metrics,
    }
