"""The alert consumer: per domain, windowed rule state per entity, alerts out.

It reads the scored topics of the domains that have rules in the group ``<app_id>-alerts``
(``streams.group_consumer``: read committed, commit after each handled fetch). Per scored
partition it keeps each entity's state (``engine.EntityState``: the results within the
longest window and when each rule last fired) in memory, backed by a compacted changelog topic
``<app_id>-alert-state-<domain>-changelog`` with as many partitions as the scored topic: an
entity's state lives on the partition number its results arrive on, as one record per result
in its windows and one for the rest (``streams.alerting.changelog``). For each fetch:

1. every result is folded into its entity's state, in offset order, giving the alerts it
   fires (its record's Kafka timestamp bounds how far its event time moves the window);
2. the alerts go to the ``alerts`` topic (keyed by entity) and the ClickHouse ``alerts``
   table, and both are awaited (a malformed result goes to the dead letters the same way);
3. the changed states go to the changelog, and are awaited;
4. the offsets are committed.

What a crash can do, and why nothing is lost or fired twice under a new id:

* before 2 completes: the results are read again and folded on the same state, so they fire
  the same alerts, with the same ids (a hash of domain, rule, entity and triggering event);
* between 2 and 3: as above, the same alerts are sent again; ClickHouse collapses them by id
  (``ReplacingMergeTree``; read with ``FINAL``) and topic subscribers see an id they can drop;
* after 3, before 4: the restarted member restores the state from the changelog, which
  already holds the results' event ids, so folding them again changes nothing and fires
  nothing (``EntityState.fold`` is idempotent per event id).

So alerts are delivered at least once, each alert has one id, and cool-downs survive restarts
because the time a rule last fired is in the same changelog record as the window state. When
a partition is assigned, its states are read back from its changelog partition before any of
its results are folded. An entity that no result has reached for ``alerts.state_ttl_s`` is
forgotten, in memory and (by tombstones) in the changelog (``streams.alerting.expiry``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

import domains
from config.settings import DomainName, Settings, TopicSettings
from streams.alerting import changelog
from streams.alerting.alert import Alert
from streams.alerting.engine import EntityState
from streams.alerting.expiry import Expiry
from streams.alerting.rules import Rule, load_rules
from streams.connection import consumer_options
from streams.deadletter import DeadLetter
from streams.explaining import EventExplainer, explanation_outcome
from streams.group_consumer import Fetched, GroupConsumer
from streams.observability.metrics import PipelineMetrics
from streams.processor import Sink, kafka_time
from streams.shared import Send, SharedProducer
from streams.validation import describe

ALERTS_TABLE = "alerts"
RESTORE_FETCH_MS = 500


class AlertPublisher:
    """Alerts to the alerts topic and ClickHouse; returns once both have them."""

    def __init__(self, send: Send, sink: Sink, topic: str, deadletter_topic: str) -> None:
        self.send = send
        self.sink = sink
        self.topic = topic
        self.deadletter_topic = deadletter_topic

    async def publish(self, alerts: Sequence[Alert]) -> None:
        written_at = datetime.now(UTC)
        acks = [
            await self.send(
                self.topic, alert.entity.encode(), alert.model_dump_json().encode(), None
            )
            for alert in alerts
        ]
        await asyncio.gather(
            *acks, self.sink.write(ALERTS_TABLE, [alert.row(written_at) for alert in alerts])
        )

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        acks = [
            await self.send(self.deadletter_topic, letter.key, letter.payload, letter.headers())
            for letter in letters
        ]
        await asyncio.gather(*acks, self.sink.write("deadletter", [dl.row() for dl in letters]))


def state_changelog(settings: Settings, domain: DomainName) -> str:
    return f"{settings.pipeline.app_id}-alert-state-{domain}-changelog"


def state_changelogs(settings: Settings) -> list[TopicSettings]:
    """The changelog topics of the alert state, to provision before a worker starts."""
    book = load_rules(settings.rules_path)
    return [
        TopicSettings(
            name=state_changelog(settings, domain),
            partitions=settings.topics.scored(domain).partitions,
            retention_ms=-1,
            cleanup_policy="compact",
        )
        for domain in domains.names()
        if book.for_domain(domain)
    ]


class AlertConsumer(GroupConsumer):
    """Folds scored results into entity states and publishes the alerts; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        rules: dict[DomainName, list[Rule]],
        publisher: AlertPublisher,
        producer: SharedProducer,
        metrics: PipelineMetrics,
        explainer: EventExplainer | None = None,
        **kwargs: Any,
    ) -> None:
        self.domains = {settings.topics.scored(domain).name: domain for domain in rules}
        super().__init__(
            settings.kafka,
            f"{settings.pipeline.app_id}-alerts",
            self.domains,
            settings.pipeline.session_timeout_s,
            guarantee=settings.pipeline.processing_guarantee,
            **kwargs,
        )
        self.rules = rules
        self.publisher = publisher
        self.producer = producer
        self.metrics = metrics
        self.explainer = explainer
        self.changelogs = {domain: state_changelog(settings, domain) for domain in rules}
        self.states: dict[TopicPartition, dict[str, EntityState]] = {}
        # Entities read from states written whole, per partition: rewritten at their next write.
        self.whole: dict[TopicPartition, set[str]] = {}
        self.expiry: dict[TopicPartition, Expiry] = {}
        self.ttl_ms = {
            domain: round(1000 * max(
                settings.alerts.state_ttl_s,
                max((r.window + r.cooldown).total_seconds() for r in domain_rules),
            ))
            for domain, domain_rules in rules.items()
        }  # fmt: skip

    def held(self) -> dict[DomainName, tuple[int, int]]:
        """Per domain: the entities whose state is held, and the results in their windows."""
        held: dict[DomainName, tuple[int, int]] = {}
        for tp, states in self.states.items():
            entities, results = held.get(self.domains[tp.topic], (0, 0))
            results += sum(len(state.seen) for state in states.values())
            held[self.domains[tp.topic]] = (entities + len(states), results)
        return held

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        # Every rebalance revokes every partition first (eager protocol): all are restored.
        await self._restore(sorted(partitions))

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self.states.pop(tp, None)
            self.whole.pop(tp, None)
            self.expiry.pop(tp, None)

    async def undecodable(self, letter: DeadLetter) -> None:
        await self.publisher.dead_letter([letter])

    async def handle(self, fetched: Fetched) -> None:
        alerts: list[Alert] = []
        letters: list[DeadLetter] = []
        changed: dict[tuple[TopicPartition, str], changelog.Changes] = {}
        forgotten: list[tuple[TopicPartition, changelog.Record]] = []
        wall_ms = round(time.time() * 1000)
        for tp, records in fetched.items():
            domain = self.domains[tp.topic]
            states = self.states.setdefault(tp, {})
            expiry = self.expiry.setdefault(tp, Expiry(self.ttl_ms[domain]))
            for record in records:
                arrival = kafka_time(record.timestamp)
                expiry.tick(min(round(arrival.timestamp() * 1000), wall_ms))
                try:
                    result = domains.get(domain).result.model_validate_json(record.value or b"")
                except ValidationError as error:
                    letters.append(_dead_letter(record, domain, describe(error), arrival))
                    continue
                entity = getattr(result, domains.get(domain).entity)
                state = states.setdefault(entity, EntityState())
                outcome = state.fold(domain, self.rules[domain], result, arrival)
                alerts.extend(outcome.alerts)
                if outcome.added is not None:
                    changes = changed.setdefault((tp, entity), changelog.Changes())
                    changes.added.append(outcome.added)
                    changes.left.extend(outcome.left)
            for entity in expiry.due(states):
                left = changed.pop((tp, entity), changelog.Changes()).left
                forgotten += [(tp, r) for r in changelog.forget(entity, states.pop(entity), left)]
                self.whole.get(tp, set()).discard(entity)
        if alerts and self.explainer is not None:
            alerts = await self.explainer.attach(alerts)
        if alerts:
            await self.publisher.publish(alerts)
            for a in alerts:
                outcome = explanation_outcome(a)
                self.metrics.alerts_sent.labels(a.domain, a.rule, a.severity, outcome).inc()
        if letters:
            await self.publisher.dead_letter(letters)
        writes = forgotten
        for (tp, entity), changes in changed.items():
            whole = self.whole.get(tp, set())
            state = self.states[tp][entity]
            writes += [(tp, r) for r in changelog.records(entity, state, changes, entity in whole)]
            whole.discard(entity)
        acks = [
            await self.producer.producer.send(
                self.changelogs[self.domains[tp.topic]],
                record.value,
                key=record.key,
                partition=tp.partition,
                headers=record.headers,
            )
            for tp, record in writes
        ]
        await asyncio.gather(*acks)

    async def _restore(self, partitions: Sequence[TopicPartition]) -> None:
        """Each scored partition's entity states, read from its changelog partition."""
        changelog_of = {
            TopicPartition(self.changelogs[self.domains[tp.topic]], tp.partition): tp
            for tp in partitions
        }
        logs: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {
            tp: [] for tp in changelog_of
        }
        # "earliest": with the default "latest", the reset of a freshly assigned partition can
        # land after the seek to the beginning and skip the whole changelog.
        reader = AIOKafkaConsumer(
            **consumer_options(self.kafka), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await reader.start()
        try:
            reader.assign(list(changelog_of))
            await reader.seek_to_beginning(*changelog_of)
            ends = await reader.end_offsets(list(changelog_of))
            pending = {tp for tp, end in ends.items() if end > 0}
            while pending:
                fetched = await reader.getmany(*pending, timeout_ms=RESTORE_FETCH_MS)
                for tp, records in fetched.items():
                    logs[tp].extend(records)
                pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
        finally:
            await reader.stop()
        for tp, records in logs.items():
            states, whole = changelog.restore((r.key, r.value, r.headers) for r in records)
            self.states[changelog_of[tp]] = states
            self.whole[changelog_of[tp]] = whole


def _dead_letter(
    record: ConsumerRecord[bytes, bytes], domain: DomainName, reason: str, arrival: datetime
) -> DeadLetter:
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        kind="invalid scored result",
        reason=f"not a {domain} scored result: {reason}",
        key=record.key,
        payload=record.value or b"",
        ts=arrival,
    )


def alert_consumer(
    settings: Settings,
    sink: Sink,
    producer: SharedProducer,
    scoring: bool,
    metrics: PipelineMetrics,
    explainer: EventExplainer | None,
) -> AlertConsumer | None:
    """The worker's alert consumer: for the domains the rules file has rules for, unless the
    worker scores (``scoring``) and alerting is set to run in workers of its own. With an
    ``explainer`` each alert carries the explanation of its triggering event.

    Raises RulesError (a SettingsError) when the rules file is missing or invalid."""
    if scoring and not settings.alerts.in_scoring_workers:
        return None
    book = load_rules(settings.rules_path)
    rules = {
        domain: book.for_domain(domain) for domain in domains.names() if book.for_domain(domain)
    }
    if not rules:
        return None
    publisher = AlertPublisher(
        producer.send, sink, settings.topics.alerts.name, settings.topics.deadletter.name
    )
    return AlertConsumer(settings, rules, publisher, producer, metrics, explainer)
