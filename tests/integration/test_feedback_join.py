"""Feedback labels joined to their stored events, on the real broker and embedded store: a
label of a stored event becomes a feedback row; a label whose stored row no longer parses,
or whose event never came, is dead-lettered on the topic and in the store with its reason
and the label's own bytes."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from conftest import Worker, new_worker, query
from helpers import committed, create_tables_in, provision, read_topic, write_events

import domains
from config.settings import Settings
from domains.base import Lineage
from domains.news import NewsEvent
from models.serving.loading import load_scorer
from store.readonly import ReadOnlyStore
from store.sink import ClickHouseSink
from streams.adaptation.feedback import FeedbackJoin
from streams.adaptation.messages import FeedbackLabel
from streams.deadletter import HEADER_REASON, kind_from_headers
from streams.groups import wait_until_stable
from streams.observability.metrics import PipelineMetrics
from streams.processor import ScorerHolder
from streams.producer import produce
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


@pytest.mark.kafka
def test_a_worker_stopped_while_a_label_waits_for_its_event_stops_at_once_and_keeps_the_label(
    kafka: Settings, registry_dir: Path, workers: list[Worker]
) -> None:
    """A label whose event is not stored yet waits for it up to ``adaptation.event_wait_s``;
    a stop meanwhile ends the worker at once and cleanly (not after the wait, nor killed by its
    shutdown deadline), and the label, neither joined nor dead-lettered, is left uncommitted
    for the group to read again."""
    settings = kafka
    provision(settings)
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    worker = new_worker(workers, settings, registry_dir, app_id, "w")
    worker.env["SIGNALYARD_ADAPTATION__EVENT_WAIT_S"] = "300"  # longer than any stop may take
    worker.start("sensors")
    label = FeedbackLabel(
        event_id="s-not-stored-yet", domain="sensors", label="none", labeler="ana",
        ts=datetime.now(UTC),
    )  # fmt: skip
    topic = settings.topics.feedback_labels.name
    asyncio.run(
        produce(settings.kafka, topic, [(b"s-not-stored-yet", label.model_dump_json().encode())])
    )
    group = f"{app_id}-feedback"
    assert asyncio.run(wait_until_stable(settings.kafka, group, 1, timeout_s=120)), worker.tail()
    time.sleep(5)  # the label fetched, its event looked up again and again
    stopping = time.monotonic()
    assert worker.stop() == 0, worker.tail()
    assert time.monotonic() - stopping < 20, worker.tail()
    offsets = asyncio.run(committed(settings, group))
    assert all(offset <= 0 for offset in offsets.values()), f"the label was committed: {offsets}"
    assert query(settings, "SELECT count() FROM deadletter") == [(0,)]
    assert query(settings, "SELECT count() FROM feedback") == [(0,)]
