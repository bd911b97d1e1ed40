"""Feedback labels joined to their stored events, on the real broker and embedded store: a
label of a stored event becomes a feedback row; a label whose stored row no longer parses,
or whose event never came, is dead-lettered on the topic and in the store with its reason
and the label's own bytes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import ConsumerRecord
from conftest import query
from helpers import create_tables_in, read_topic, write_events

import domains
from config.settings import Settings
from domains.base import Lineage
from domains.news import NewsEvent
from models.serving.loading import load_scorer
from store.readonly import ReadOnlyStore
from store.sink import ClickHouseSink
from streams.adaptation.feedback import FeedbackJoin
from streams.deadletter import HEADER_REASON, kind_from_headers
from streams.observability.metrics import PipelineMetrics
from streams.processor import ScorerHolder
from streams.shared import SharedProducer
from streams.topics import provision_topics

ORIGIN = Lineage("news.raw", 0, 0, "at_least_once")


def label(offset: int, event_id: str) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps({"event_id": event_id, "domain": "news", "label": "negative",
                        "labeler": "ana", "ts": "2026-11-28T12:00:00Z"}).encode()  # fmt: skip
    key = event_id.encode()
    return ConsumerRecord("feedback", 0, offset, -1, 0, key, value, None, len(key), len(value), ())


def test_labels_of_invalid_or_missing_stored_events_are_dead_lettered_with_the_reason(
    kafka: Settings, keyword_model: Path
) -> None:
    settings = kafka
    scorer = load_scorer(keyword_model, "cpu", 32)
    now = datetime.now(UTC)
    event = NewsEvent(id="e-1", ts=now, source="wire", ticker="ACME", headline="a report")
    (prediction,) = scorer.score([domains.get("news").model_input(event)])
    result = domains.get("news").scored_result(event, prediction, scorer, 1, now, now, ORIGIN)
    labels = [label(0, "e-1"), label(1, "bad"), label(2, "never")]
    metrics = PipelineMetrics()

    async def run() -> None:
        await provision_topics(settings.kafka, [settings.topics.deadletter])
        sink = ClickHouseSink(settings.clickhouse_dsn, settings.sink)
        producer = SharedProducer(settings.kafka)
        await sink.start()
        await producer.start()
        try:
            await write_events(sink, event, result, now)
            store = ReadOnlyStore(settings.clickhouse_dsn, settings.queries)
            agent = FeedbackJoin({"news": ScorerHolder(scorer)}, store, producer.send, sink,
                                  settings.topics.deadletter.name, 0.3, metrics)  # fmt: skip
            await agent.handle(labels)
        finally:
            await producer.stop()
            await sink.stop()

    create_tables_in(settings)
    asyncio.run(run())

    rows = query(settings, "SELECT event_id, label, predicted_label, input FROM feedback FINAL")
    assert rows == [("e-1", "negative", prediction["label"], "a report")]
    letters = asyncio.run(read_topic(settings, settings.topics.deadletter, at_least=2))
    by_value = {letter.value: letter for letter in letters}
    assert set(by_value) == {labels[1].value, labels[2].value}  # the labels' own bytes
    invalid, missing = by_value[labels[1].value], by_value[labels[2].value]
    assert kind_from_headers(invalid.headers) == "invalid stored event"
    assert "headline" in dict(invalid.headers)[HEADER_REASON].decode()
    assert kind_from_headers(missing.headers) == "unknown event"
    assert "'never'" in dict(missing.headers)[HEADER_REASON].decode()
    stored = query(settings, "SELECT reason FROM deadletter FINAL")
    assert len(stored) == 2 and any("headline" in reason for (reason,) in stored)
    counted = {
        sample.labels["outcome"]: sample.value
        for sample in metrics.feedback_labels.collect()[0].samples
        if sample.name.endswith("_total")
    }
    assert counted == {"joined": 1.0, "invalid stored event": 1.0, "unknown event": 1.0}
