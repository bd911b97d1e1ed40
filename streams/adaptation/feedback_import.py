"""``signalyard feedback import``: a labeled file played as analysts labeling a live stream.

Each row becomes an event with an id derived from its content (the same text is the same event
on every import) and a label for that event. Rows whose event is not in the store yet are first
published to the domain's raw topic, so the workers score them like any other event; then every
label goes to ``feedback.labels``, where the workers join it to its scored event.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import domains
from config.settings import DomainName
from models.data import FAILURE_MODES, SENTIMENT_LABELS, read_readings, read_text
from streams.adaptation.messages import FeedbackLabel
from streams.producer import Record

SOURCE = "feedback-import"
CASHTAG = re.compile(r"\$([A-Za-z][A-Za-z.]{0,9})\b")


@dataclass(frozen=True)
class LabeledEvent:
    event_id: str
    event: Record  # for the raw topic
    label: str


def labeled_events(
    domain: DomainName, path: Path, intents: tuple[str, ...], ts: datetime
) -> list[LabeledEvent]:
    """The file's rows as events and labels; DataError for a malformed file or an unknown label
    (``intents``: the tickets labels the live model knows)."""
    if domain == "sensors":
        data = read_readings(path)
        return [
            _sensor_event(dict(reading), sensor_label(failure, modes), ts)
            for reading, failure, modes in zip(data.readings, data.failure, data.modes, strict=True)
        ]
    task = domains.get(domain).task
    text = read_text(path, task, SENTIMENT_LABELS if task == "sentiment" else intents)
    return [
        _text_event(domain, body, label, ts)
        for body, label in zip(text.texts, text.labels, strict=True)
    ]


def label_record(item: LabeledEvent, domain: DomainName, labeler: str, ts: datetime) -> Record:
    label = FeedbackLabel(event_id=item.event_id, domain=domain, label=item.label, labeler=labeler,
                          ts=ts)  # fmt: skip
    return item.event_id.encode(), label.model_dump_json().encode()


def _event_id(domain: DomainName, content: str) -> str:
    return f"{domain}-{hashlib.sha256(content.encode()).hexdigest()[:24]}"


def _text_event(domain: DomainName, body: str, label: str, ts: datetime) -> LabeledEvent:
    event_id = _event_id(domain, body)
    if domain == "news":
        tag = CASHTAG.search(body)
        entity = tag.group(1).upper() if tag else "MARKET"
        fields = {"source": SOURCE, "ticker": entity, "headline": body}
    else:
        entity = SOURCE
        fields = {"customer_id": entity, "channel": "import", "text": body}
    value = json.dumps({"id": event_id, "ts": ts.isoformat(), **fields}).encode()
    return LabeledEvent(event_id, (entity.encode(), value), label)


def sensor_label(failure: int, modes: tuple[str, ...]) -> str:
    """An AI4I row's label as feedback gives it: "none", its first failure mode, or "failure"
    for a failure without a mode."""
    if not failure:
        return "none"
    return next((mode for mode in FAILURE_MODES if mode in modes), "failure")


def _sensor_event(reading: dict, label: str, ts: datetime) -> LabeledEvent:
    event_id = _event_id("sensors", json.dumps(reading, sort_keys=True))
    fields = {"type": reading.pop("machine_type"), **reading}
    value = json.dumps({"id": event_id, "ts": ts.isoformat(), "machine_id": SOURCE, **fields})
    return LabeledEvent(event_id, (SOURCE.encode(), value.encode()), label)
