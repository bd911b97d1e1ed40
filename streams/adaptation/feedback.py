"""Feedback in: labels from ``feedback.labels`` joined to their scored events in ClickHouse.

Each label is validated like an event (a malformed message, an unknown domain or an unknown
label is dead-lettered with its reason), then looked up: the event's input (the text the model
read, or the reading as JSON), the label the live model predicted and the version that did.
A label may arrive before its event is scored and stored (``signalyard feedback import``
publishes both at once), so a label whose event is missing is looked up again until
``adaptation.event_wait_s`` has passed; then it is dead-lettered as an unknown event id. A
label whose stored event no longer parses as its schema is dead-lettered as an invalid stored
event.

Labels are read by ``FeedbackConsumer`` in the group ``<app_id>-feedback``, a fetch at a
time (one store lookup per fetch), and committed only after their rows and dead letters are
written (``streams.group_consumer``). A stop does not wait for a label's event: the fetch is
left uncommitted, and the group reads it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

import domains
from config.settings import DomainName, KafkaSettings
from store.readonly import ReadOnlyStore
from streams.adaptation.messages import FeedbackLabel, known_labels
from streams.deadletter import DeadLetter
from streams.group_consumer import Fetched, GroupConsumer, Interrupted
from streams.observability.metrics import PipelineMetrics
from streams.processor import ScorerHolder, Sink, SourceRecord, dead_letter
from streams.shared import Send
from streams.stored_events import LOOKUP_INTERVAL_S, StoredEvent, find_events
from streams.validation import Rejected, describe, reject_repeated_keys

FEEDBACK_TABLE = "feedback"
BATCH_SIZE = 500


class FeedbackJoin:
    """Joins labels to their stored events; ``handle`` takes a batch of label records."""

    def __init__(
        self,
        scorers: Mapping[DomainName, ScorerHolder],
        store: ReadOnlyStore,
        send: Send,
        sink: Sink,
        deadletter_topic: str,
        event_wait_s: float,
        metrics: PipelineMetrics,
    ) -> None:
        self.scorers = scorers
        self.metrics = metrics
        self.store = store
        self.send = send
        self.sink = sink
        self.deadletter_topic = deadletter_topic
        self.event_wait_s = event_wait_s

    async def handle(
        self, records: Sequence[SourceRecord], stopping: asyncio.Event | None = None
    ) -> None:
        """Write the batch's feedback rows and dead letters; returns once both are stored.
        Raises ``Interrupted``, having written nothing, when ``stopping`` is set while a label
        still waits for its event: it is not unknown yet, and is read again."""
        now = datetime.now(UTC)
        labels: list[tuple[SourceRecord, FeedbackLabel]] = []
        dead: list[DeadLetter] = []
        for record in records:
            try:
                labels.append((record, self._parse(record)))
            except ValueError as error:
                dead.append(dead_letter(record, Rejected("invalid feedback", str(error)), now))
        wanted = {(label.domain, label.event_id) for _, label in labels}
        lookup = await find_events(self.store, wanted, self.event_wait_s, stopping)
        waiting = wanted - lookup.found.keys() - lookup.invalid.keys()
        if waiting and stopping is not None and stopping.is_set():
            raise Interrupted(f"{len(waiting)} labels wait for their events")
        if lookup.errors:
            # The last lookup, past the wait, failed (busy, over a [queries] limit): the error
            # ends the worker and the labels are read again, rather than dead-lettered as
            # unknown.
            raise next(iter(lookup.errors.values()))
        rows = []
        for record, label in labels:
            key = (label.domain, label.event_id)
            stored = lookup.found.get(key)
            if key in lookup.invalid:
                rejected = Rejected("invalid stored event", lookup.invalid[key])
                dead.append(dead_letter(record, rejected, now))
            elif stored is None:
                reason = (
                    f"unknown event id: no scored {label.domain} event {label.event_id!r} "
                    f"in the store after {self.event_wait_s:g} s"
                )
                dead.append(dead_letter(record, Rejected("unknown event", reason), now))
            else:
                rows.append(_row(label, stored, now))
        await asyncio.gather(self.sink.write(FEEDBACK_TABLE, rows), self.dead_letter(dead))
        self.metrics.feedback_labels.labels("joined").inc(len(rows))
        self.metrics.labeled(rows)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        """Publish and store dead letters; returns once both are done."""
        acks = [
            await self.send(self.deadletter_topic, letter.key, letter.payload, letter.headers())
            for letter in letters
        ]
        await asyncio.gather(*acks, self.sink.write("deadletter", [dl.row() for dl in letters]))
        for letter in letters:
            self.metrics.feedback_labels.labels(letter.kind).inc()

    def _parse(self, record: SourceRecord) -> FeedbackLabel:
        try:
            label = FeedbackLabel.model_validate_json(record.value or b"")
            reject_repeated_keys(record.value or b"")
        except ValidationError as error:
            raise ValueError(f"not a feedback label: {describe(error)}") from None
        except Rejected as repeated:
            raise ValueError(f"not a feedback label: {repeated}") from None
        holder = self.scorers.get(label.domain)
        if holder is None:
            raise ValueError(f"this worker does not score {label.domain} events")
        allowed = known_labels(holder.current.task, getattr(holder.current, "labels", ()))
        if label.label not in allowed:
            shown = ", ".join(allowed[:10]) + (", ..." if len(allowed) > 10 else "")
            raise ValueError(f"unknown {label.domain} label {label.label!r} (expected {shown})")
        return label


def _row(label: FeedbackLabel, stored: StoredEvent, written_at: datetime) -> dict[str, Any]:
    return {
        "event_id": label.event_id,
        "domain": label.domain,
        "label": label.label,
        "labeler": label.labeler,
        "ts": label.ts,
        "written_at": written_at,
        "predicted_label": stored.predicted_label,
        "model_version": stored.model_version,
        "input": stored.input,
        "event_ts": datetime.fromisoformat(stored.event_ts),
    }


class FeedbackConsumer(GroupConsumer):
    """Reads ``feedback.labels`` in the group ``<app_id>-feedback`` into ``FeedbackJoin``."""

    max_records = BATCH_SIZE

    def __init__(
        self, agent: FeedbackJoin, kafka: KafkaSettings, app_id: str, topic: str,
        session_timeout_s: float, query_timeout_s: float, **kwargs: Any,
    ) -> None:  # fmt: skip
        # A fetch may wait event_wait_s for its events, then one more lookup: a query per
        # domain, each of which may run out of time.
        handle_s = agent.event_wait_s + LOOKUP_INTERVAL_S + len(domains.names()) * query_timeout_s
        group = f"{app_id}-feedback"
        super().__init__(kafka, group, [topic], session_timeout_s, handle_s, **kwargs)
        self.agent = agent

    async def handle(self, fetched: Fetched) -> None:
        records = [r for batch in fetched.values() for r in batch]
        await self.agent.handle(records, self.stopping)

    async def undecodable(self, letter: DeadLetter) -> None:
        await self.agent.dead_letter([letter])
