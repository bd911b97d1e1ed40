"""``signalyard feedback import``: a labeled file played as analysts labeling a live stream.

Each row becomes an event with an id derived from its content (the same text is the same event
on every import) and a label for that event. Rows whose event is not in the store yet are first
published to the domain's raw topic, so the workers score them like any other event; then every
label goes to ``feedback.labels``, where the workers join it to its scored event.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import domains
from config.settings import DomainName
from models.data import SENTIMENT_LABELS
from streams.adaptation.messages import FeedbackLabel
from streams.producer import Record

SOURCE = "feedback-import"


@dataclass(frozen=True)
class LabeledEvent:
    event_id: str
    event: Record  # for the raw topic
    label: str


def labeled_events(
    domain: DomainName, path: Path, intents: tuple[str, ...], ts: datetime
) -> list[LabeledEvent]:
    """The file's rows as events and labels; DataError for a malformed file or an unknown label
    (``intents``: the labels of an intent_risk model, the live model's own)."""
    spec = domains.get(domain)
    known = SENTIMENT_LABELS if spec.task == "sentiment" else intents
    return [
        _labeled_event(domain, model_input, row, label, ts)
        for model_input, row, label in spec.labeled_rows(path, known)
    ]


def label_record(item: LabeledEvent, domain: DomainName, labeler: str, ts: datetime) -> Record:
    label = FeedbackLabel(event_id=item.event_id, domain=domain, label=item.label, labeler=labeler,
                          ts=ts)  # fmt: skip
    return item.event_id.encode(), label.model_dump_json().encode()


def _labeled_event(
    domain: DomainName, model_input: Any, row: Mapping[str, str], label: str, ts: datetime
) -> LabeledEvent:
    """The same content is the same event, with the same key, on every import: the text (or
    reading) and the row's cells of the domain's ``labeled_columns``."""
    spec = domains.get(domain)
    text = isinstance(model_input, str)
    content = model_input if text else json.dumps(model_input, sort_keys=True)
    cells = spec.labeled_cells(row)
    if cells:
        content += json.dumps(cells, sort_keys=True)
    event_id = f"{domain}-{hashlib.sha256(content.encode()).hexdigest()[:24]}"
    fields = spec.labeled_event(model_input, row, SOURCE, random.Random(event_id))
    value = json.dumps({"id": event_id, "ts": ts.isoformat(), **fields}).encode()
    return LabeledEvent(event_id, (str(fields[spec.entity]).encode(), value), label)
