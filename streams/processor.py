"""Scoring one micro-batch: validate, score off the event loop, then deliver.

``prepare`` turns a batch of raw records into results and dead letters: each record is
validated (a bad one becomes a dead letter with its reason), the valid events are scored by
the domain's current model in a dedicated thread, so the event loop keeps serving heartbeats,
fetches and the other agents while the model runs. ``deliver`` publishes every result to the
scored topic and every dead letter to the dead-letter topic, writes the event, score and
dead-letter rows to ClickHouse, and returns only when all of that is acknowledged: the caller
commits the batch's Kafka offsets after that, never before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import domains
from config.settings import DomainName
from domains.base import Lineage, RawEvent, ScoredResult
from models.base import ModelInput, Prediction, Scorer
from streams.deadletter import DeadLetter
from streams.publishing import Outgoing, Publish
from streams.validation import EventLimits, Rejected, parse_events

# Epoch milliseconds of 9999-12-31T23:59:59.999Z, the last time a datetime can hold.
LAST_MS = (datetime.max.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
    milliseconds=1
)

log = logging.getLogger(__name__)


class Sink(Protocol):
    async def write(self, table: str, rows: Sequence[dict[str, Any]]) -> None: ...


class SourceRecord(Protocol):
    """A consumed Kafka record, as far as scoring needs it: aiokafka's ``ConsumerRecord`` is
    one, so records are handed on as read, not copied."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int:
        """Milliseconds since the epoch: when the record reached Kafka (-1: not known)."""
        ...

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass
class ScorerHolder:
    """The domain's live scorer; each batch reads it once, so it can be swapped between batches."""

    current: Scorer


@dataclass
class PreparedBatch:
    results: list[ScoredResult] = field(default_factory=list)
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True)
class Destinations:
    scored_topic: str
    deadletter_topic: str
    events_table: str
    scores_table: str
    deadletter_table: str = "deadletter"


class BatchProcessor:
    def __init__(
        self,
        domain: DomainName,
        scorer: ScorerHolder,
        executor: Executor,
        publish: Publish,
        sink: Sink,
        destinations: Destinations,
        limits: EventLimits,
        guarantee: str,
    ) -> None:
        """``guarantee``: the processing guarantee each result's lineage names."""
        self.domain = domain
        self.scorer = scorer
        self.executor = executor
        self.publish = publish
        self.sink = sink
        self.destinations = destinations
        self.limits = limits
        self.guarantee = guarantee

    async def prepare(self, records: Sequence[SourceRecord]) -> PreparedBatch:
        batch = PreparedBatch()
        valid: list[tuple[SourceRecord, RawEvent, datetime]] = []
        arrivals = [kafka_time(record.timestamp) for record in records]
        payloads = [record.value for record in records]
        parsed = parse_events(self.domain, payloads, self.limits, arrivals)
        for record, outcome, ingested_at in zip(records, parsed, arrivals, strict=True):
            if isinstance(outcome, Rejected):
                batch.dead_letters.append(dead_letter(record, outcome, ingested_at))
            else:
                valid.append((record, outcome, ingested_at))
        if not valid:
            return batch
        scorer = self.scorer.current
        domain = domains.get(self.domain)
        inputs = [domain.model_input(event) for _, event, _ in valid]
        outcomes = await predict(self.executor, scorer, inputs, self.domain)
        scored_at = datetime.now(UTC)
        for (record, event, ingested_at), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                batch.dead_letters.append(dead_letter(record, outcome, ingested_at))
                continue
            batch.event_rows.append(domain.event_row(event, ingested_at))
            batch.results.append(
                domain.scored_result(
                    event,
                    outcome,
                    scorer,
                    len(valid),
                    ingested_at,
                    scored_at,
                    Lineage(record.topic, record.partition, record.offset, self.guarantee),
                )
            )
        return batch

    async def deliver(self, batch: PreparedBatch) -> None:
        """Publish and store the batch; returns once Kafka and ClickHouse both have it."""
        where = self.destinations
        domain = domains.get(self.domain)
        # The model's compiled serializer, called straight: bytes, without model_dump_json's
        # Python-level options and the copy of encoding its string.
        to_json = domain.result.__pydantic_serializer__.to_json
        results = await self.publish(
            where.scored_topic,
            [
                Outgoing(
                    getattr(result, domain.entity).encode(),
                    to_json(result),
                    source=(result.source_topic, result.source_partition),
                )
                for result in batch.results
            ],
        )
        letters = await self.publish(
            where.deadletter_topic,
            [
                Outgoing(
                    letter.key,
                    letter.payload,
                    letter.headers(),
                    source=(letter.source_topic, letter.partition),
                )
                for letter in batch.dead_letters
            ],
        )
        await asyncio.gather(
            results,
            letters,
            self.sink.write(where.events_table, batch.event_rows),
            # A result is flat: its fields, as they are, are the row (copied from the instance
            # dictionary: model_dump converts each value again, iterating the model is Python).
            self.sink.write(where.scores_table, [vars(result).copy() for result in batch.results]),
            self.sink.write(where.deadletter_table, [dl.row() for dl in batch.dead_letters]),
        )


async def predict(
    executor: Executor, scorer: Scorer, inputs: list[ModelInput], domain: DomainName
) -> list[Prediction | Rejected]:
    """Predictions in input order, computed on ``executor``; when the batch fails, each input is
    retried alone so that one input the model cannot handle is rejected instead of the batch."""
    try:
        return await _score(executor, scorer, inputs)
    except Exception as error:
        log.warning("%s batch of %d failed (%s); scoring one by one", domain, len(inputs), error)
    outcomes: list[Prediction | Rejected] = []
    for item in inputs:
        try:
            outcomes.extend(await _score(executor, scorer, [item]))
        except Exception as error:
            outcomes.append(Rejected("scoring failed", f"scoring failed: {error}"))
    return outcomes


async def _score(executor: Executor, scorer: Scorer, inputs: list[ModelInput]) -> list[Prediction]:
    loop = asyncio.get_running_loop()
    predictions = await loop.run_in_executor(executor, scorer.score, inputs)
    if len(predictions) != len(inputs):
        raise RuntimeError(f"{len(predictions)} predictions for {len(inputs)} inputs")
    return predictions


def kafka_time(timestamp_ms: int) -> datetime:
    """A record's Kafka timestamp (milliseconds) as a time. One without (-1), or past the last
    date a time can name (a producer may set any CreateTime), counts as now."""
    if 0 < timestamp_ms <= LAST_MS:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    return datetime.now(UTC)


def dead_letter(record: SourceRecord, rejected: Rejected, at: datetime) -> DeadLetter:
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        kind=rejected.kind,
        reason=str(rejected),
        key=record.key,
        payload=record.value or b"",
        ts=at,
    )
