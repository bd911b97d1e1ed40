"""The alert agents: per domain, windowed rule state per entity in a Faust table, alerts out.

Each domain with rules gets one agent on its scored topic and one table
(``alert-state-<domain>``, in memory, backed by a compacted changelog topic with as many
partitions as the scored topic). The table holds, per entity, the results within the longest
window and when each rule last fired (``engine.EntityState``). For each scored result, in
order:

1. the entity's state and the result are folded into the new state and the alerts it fires;
2. the alerts are published to the ``alerts`` topic (keyed by entity) and written to the
   ClickHouse ``alerts`` table, and both are awaited;
3. the new state is put in the table, which queues its changelog record;
4. the result is acked. Faust flushes the producer, and with it the changelog record, before it
   commits an offset.

What a crash can do, and why nothing is lost or fired twice under a new id:

* before 2 completes: the result is consumed again and folded on the same state, so it fires
  the same alerts, with the same ids (a hash of domain, rule, entity and triggering event);
* between 2 and the changelog record reaching Kafka: as above, the same alerts are sent again;
  ClickHouse collapses them by id (``ReplacingMergeTree``; read with ``FINAL``) and topic
  subscribers see a duplicate id they can drop;
* after the changelog record, before the offset commit: the restarted worker rebuilds the
  table from the changelog, which already holds the result's event id, so folding it again
  changes nothing and fires nothing (``engine.evaluate`` is idempotent per event id).

So alerts are delivered at least once, each alert has one id, and cool-downs survive restarts
because the time a rule last fired is in the same table record as the window state. Windows
and cool-downs run on event time (each result's ``ts``), so a replay decides as the first run
did.

The agents only write tables; they do not batch with ``stream.take()``, which acks a buffered
batch on its own and does not mix with table writes (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import faust
from faust.types import EventT, StreamT, TableT
from pydantic import ValidationError

from signalyard.settings import DOMAINS, Domain, Settings, TopicSettings
from streams.agents import EXIT_FATAL, Send, producer_send
from streams.alerting.alert import Alert
from streams.alerting.engine import EntityState, evaluate
from streams.alerting.rules import Rule, load_rules
from streams.deadletter import DeadLetter
from streams.processor import Sink
from streams.results import ENTITY_COLUMNS
from streams.schemas import SCORE_SCHEMAS
from streams.validation import describe

if TYPE_CHECKING:  # streams.app adds these agents to its app
    from streams.app import ScoringRuntime

log = logging.getLogger(__name__)

ALERTS_TABLE = "alerts"


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

    async def dead_letter(self, letter: DeadLetter) -> None:
        ack = await self.send(self.deadletter_topic, letter.key, letter.payload, letter.headers())
        await asyncio.gather(ack, self.sink.write("deadletter", [letter.row()]))


class AlertAgent:
    def __init__(
        self, domain: Domain, rules: Sequence[Rule], table: TableT, publisher: AlertPublisher
    ) -> None:
        self.domain = domain
        self.rules = list(rules)
        self.table = table
        self.publisher = publisher

    async def run(self, stream: StreamT) -> None:
        """The Faust agent body: one result at a time, acked once its alerts are out."""
        stream = stream.noack()
        try:
            async for event in stream.events():
                await self.handle(event)
                await stream.ack(event)
        except Exception:
            # Like the scoring agents: an unacked result would hold every later commit back,
            # so end the process and let the restart consume from the last commit.
            log.critical("alert agent %s failed; exiting", self.domain, exc_info=True)
            logging.shutdown()
            os._exit(EXIT_FATAL)

    async def handle(self, event: EventT) -> None:
        message = event.message
        try:
            result = SCORE_SCHEMAS[self.domain].model_validate_json(message.value or b"")
        except ValidationError as error:
            reason = f"not a {self.domain} scored result: {describe(error)}"
            await self.publisher.dead_letter(
                DeadLetter(
                    source_topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    kind="invalid scored result",
                    reason=reason,
                    key=message.key,
                    payload=message.value or b"",
                    ts=datetime.fromtimestamp(message.timestamp, UTC),
                )
            )
            return
        entity = getattr(result, ENTITY_COLUMNS[self.domain])
        state = EntityState.from_json(self.table.get(entity))
        outcome = evaluate(self.domain, self.rules, state, result)
        if outcome.alerts:
            await self.publisher.publish(outcome.alerts)
        if outcome.changed:
            self.table[entity] = outcome.state.to_json()


def state_table(domain: Domain) -> str:
    return f"alert-state-{domain}"


def state_changelogs(settings: Settings) -> list[TopicSettings]:
    """The changelog topics of the alert state tables, to provision before a worker starts.

    Faust creates a missing changelog at start-up, and the first metadata after that can show
    it with 0 partitions, which Faust then refuses as a mismatch with the scored topic.
    """
    book = load_rules(settings.rules_path)
    return [
        TopicSettings(
            name=f"{settings.pipeline.app_id}-{state_table(domain)}-changelog",
            partitions=settings.topics.scored(domain).partitions,
            retention_ms=-1,
            cleanup_policy="compact",
        )
        for domain in DOMAINS
        if book.for_domain(domain)
    ]


def add_alert_agents(app: faust.App, settings: Settings, runtime: ScoringRuntime) -> None:
    """Add an alert agent and its state table for every domain the rules file has rules for,
    unless the worker scores and alerting is set to run in workers of its own.

    Raises RulesError (a SettingsError) when the rules file is missing or invalid.
    """
    if runtime.scorers and not settings.alerts.in_scoring_workers:
        return
    book = load_rules(settings.rules_path)
    publisher = AlertPublisher(
        send=producer_send(app),
        sink=runtime.sink,
        topic=settings.topics.alerts.name,
        deadletter_topic=settings.topics.deadletter.name,
    )
    for domain in DOMAINS:
        rules = book.for_domain(domain)
        if rules:
            _add_agent(app, settings, domain, rules, publisher)


def _add_agent(
    app: faust.App,
    settings: Settings,
    domain: Domain,
    rules: list[Rule],
    publisher: AlertPublisher,
) -> None:
    scored = settings.topics.scored(domain)
    table = app.Table(
        state_table(domain),
        # The changelog is co-partitioned with the scored topic: a key's state lives on the
        # partition its results arrive on.
        partitions=scored.partitions,
        key_type=str,  # keys and values (EntityState.to_json) travel as JSON
    )
    agent = AlertAgent(domain, rules, table, publisher)
    topic = app.topic(scored.name, key_type=bytes, value_type=bytes)

    async def watch(stream: StreamT) -> None:
        await agent.run(stream)

    app.agent(topic, name=f"alerts-{domain}")(watch)
