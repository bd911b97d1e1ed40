"""Helpers the tests share: feeds, readers, worker and CLI harnesses, ports and waits."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from click.testing import CliRunner, Result
from conftest import Worker

import domains
from config.settings import (
    DomainName,
    Settings,
    TopicSettings,
    settings_environment,
)
from domains.base import ScoredResult
from domains.news import NewsEvent, NewsScore
from domains.sensors import SensorScore
from domains.tickets import TicketScore
from models.training.trainer import TrainOptions
from signalyard.cli import cli
from signalyard.demo.synthetic import World, events
from signalyard.local.worker_process import WorkerProcess
from store.connection import connect
from store.schema import create_tables
from store.sink import ClickHouseSink
from streams.alerting import changelog
from streams.alerting.alert import Alert
from streams.alerting.engine import EntityState
from streams.alerting.rules import (
    RuleBook,
)
from streams.connection import aiokafka_options
from streams.groups import COORDINATOR_NOT_READY, wait_until_stable
from streams.producer import produce
from streams.topics import project_topics, provision_topics

WAIT_S = 90  # seconds a test waits for what a worker should have done


# From test_adaptation_loop.py
PROCESS_WAIT_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_overrides(models: Path) -> dict[str, str]:
    """Environment of a test's worker and trainer: the registry, a fresh group, quick
    rebalances, and no alerting in the scoring worker."""
    return {
        "SIGNALYARD_REGISTRY_DIR": str(models),
        "SIGNALYARD_PIPELINE__APP_ID": f"t-{uuid.uuid4().hex[:8]}",
        "SIGNALYARD_PIPELINE__SESSION_TIMEOUT_S": "6",
        "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "false",
    }


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def wait_for_processes(
    condition: Callable[[], bool], what: str, processes: list[WorkerProcess]
) -> None:
    deadline = time.monotonic() + PROCESS_WAIT_S
    while not condition():
        for process in processes:
            assert process.running, f"{process.args[0]} exited while waiting for {what}:\n" + (
                process.tail()
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n" + "\n".join(
            process.tail() for process in processes
        )
        time.sleep(0.5)


# From test_alert_rules.py
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _common(event_id: str, minute: float) -> dict:
    return {
        "event_id": event_id,
        "ts": T0 + timedelta(minutes=minute),
        "model_name": "m",
        "model_version": "v7",
        "batch_size": 1,
        "latency_ms": 1.0,
        "scored_at": T0,
    }


def news(event_id: str, minute: float, sentiment: float) -> NewsScore:
    return NewsScore(
        **_common(event_id, minute),
        ticker="ACME",
        label="negative" if sentiment < 0 else "positive",
        p_negative=0.5,
        p_neutral=0.0,
        p_positive=0.5,
        sentiment=sentiment,
    )


def ticket(event_id: str, minute: float, risk: str, customer: str = "c-1") -> TicketScore:
    return TicketScore(
        **_common(event_id, minute),
        customer_id=customer,
        intent="x",
        top_intents=["x"],
        top_probabilities=[1.0],
        risk_score=0.9 if risk == "high" else 0.1,
        risk_level=risk,
    )


def reading(event_id: str, minute: float, probability: float, machine: str = "M-1") -> SensorScore:
    return SensorScore(
        **_common(event_id, minute),
        machine_id=machine,
        failure_probability=probability,
        failure_mode="none",
        defect=probability > 0.5,
    )


def rule_book(text: str) -> RuleBook:
    return RuleBook.model_validate(tomllib.loads(text))


SENTIMENT = """
[[rules]]
name = "drop"
domain = "news"
kind = "mean"
field = "sentiment"
below = -0.4
window = "15m"
min_count = 5
severity = "warning"
cooldown = "30m"
"""


HIGH_RISK = """
[[rules]]
name = "risky"
domain = "tickets"
kind = "count"
when = { field = "risk_level", equals = "high" }
at_least = 3
window = "1h"
severity = "critical"
cooldown = "1h"
"""


STREAK = """
[[rules]]
name = "streak"
domain = "sensors"
kind = "consecutive"
when = { field = "failure_probability", above = 0.8 }
at_least = 2
window = "1h"
severity = "critical"
cooldown = "30m"

[[rules]]
name = "failure-rate"
domain = "sensors"
kind = "share"
when = { field = "defect", equals = true }
at_least = 0.5
window = "10m"
min_count = 4
severity = "warning"
cooldown = "1h"
"""


class Folder:
    """Folds results one by one, writing each changed state to a changelog (a list of records)
    as the alert consumer does; a folder given another's log starts from the states it
    restores, as a restarted consumer would."""

    Log = list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]

    def __init__(self, text: str, log: Log | None = None) -> None:
        self.rules = rule_book(text).rules
        self.domain = self.rules[0].domain
        self.log = list(log or [])
        self.states, self.whole = changelog.restore(self.log)

    def fold(self, results: list[ScoredResult]) -> list[Alert]:
        alerts = []
        for result in results:
            entity = getattr(result, domains.get(self.domain).entity)
            state = self.states.setdefault(entity, EntityState())
            outcome = state.fold(self.domain, self.rules, result)
            if outcome.added is None:
                assert not outcome.alerts
            else:
                changes = changelog.Changes([outcome.added], list(outcome.left))
                records = changelog.records(entity, state, changes, entity in self.whole)
                self.log += [(r.key, r.value, r.headers) for r in records]
                self.whole.discard(entity)
            alerts.extend(outcome.alerts)
        return alerts


def sentiment_stream() -> list[NewsScore]:
    return [
        *(news(f"n{i}", minute, -0.6) for i, minute in enumerate([0, 2, 4, 6])),
        news("n4", 8, 0.5),  # five articles, mean -0.38: not below -0.4
        news("n5", 9, -0.6),  # six, mean -0.417: fires
        news("n6", 10, -0.9),  # still below, but cooling down
        *(news(f"n{7 + i}", 40 + i, -0.9) for i in range(5)),  # n11 at 44: 35 min later
    ]


def ticket_stream() -> list[TicketScore]:
    return [
        ticket("a1", 50, "high"),
        ticket("b1", 0, "high", "c-2"),
        ticket("a2", 55, "low"),
        ticket("b2", 60, "high", "c-2"),  # b1 is exactly one hour older: outside the window
        ticket("a3", 65, "high"),
        ticket("b3", 70, "high", "c-2"),  # only b2, b3 within the hour
        ticket("a4", 109, "high"),  # a1, a3, a4 within (09:49, 10:49]: fires
        ticket("a5", 110, "high"),  # cooling
        ticket("a6", 120, "high"),
        ticket("a7", 165, "high"),  # four in the hour, still cooling (56 min)
        ticket("a8", 170, "high"),  # 61 min after a4: a6, a7, a8 -> fires again
    ]


def reading_stream() -> list[SensorScore]:
    return [
        reading("r0", 0, 0.9),
        reading("r1", 1, 0.3),  # breaks the streak
        reading("r2", 2, 0.85),
        reading("r3", 3, 0.95),  # two in a row: streak fires; defects 3 of 4: rate fires
        reading("r4", 4, 0.99),  # both cooling
    ]


# From test_alerts_pipeline.py


class AlertWorker(Worker):
    """A ``signalyard alerts worker``: the pipeline's worker process, alert agents only."""

    def __init__(self, settings: Settings, rules: Path, app_id: str, log: Path) -> None:
        super().__init__(settings, settings.models_dir, app_id, log, ("alerts", "worker"))
        self.app_id = app_id
        self.env |= {
            "SIGNALYARD_ALERTS__RULES_FILE": str(rules),
            # Alerts are published one result at a time; a short sink delay keeps tests quick.
            "SIGNALYARD_SINK__MAX_DELAY_MS": "10",
            # A killed worker's partitions move to its successor once its session expires.
            "SIGNALYARD_PIPELINE__SESSION_TIMEOUT_S": "10",
            # Crafted results have no stored events to explain (tests/unit/test_explanations.py
            # covers explanations in alerts).
            "SIGNALYARD_EXPLANATIONS__IN_ALERTS": "false",
        }


async def _lag(settings: Settings, group: str) -> int:
    """Scored results not yet committed by the group (all of them before its first commit)."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings.kafka))
    consumer = AIOKafkaConsumer(**aiokafka_options(settings.kafka))
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [
            TopicPartition(settings.topics.scored(domain).name, p)
            for domain in domains.names()
            for p in range(settings.topics.scored(domain).partitions)
        ]
        ends = await consumer.end_offsets(partitions)
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()


def _lag_or_unknown(settings: Settings, group: str) -> int | None:
    try:
        return asyncio.run(_lag(settings, group))
    except COORDINATOR_NOT_READY:
        return None  # a fresh broker creates its offsets topic on the first group's request


def wait_until_consumed(settings: Settings, worker: AlertWorker) -> None:
    """Until the worker alone holds the scored partitions and its Faust app has joined its
    group (so it is up: a stop does not come mid start-up), and every result is committed."""
    group = f"{worker.app_id}-alerts"
    for member_of in (group, worker.app_id):
        assert asyncio.run(wait_until_stable(settings.kafka, member_of, 1, WAIT_S)), worker.tail()
    deadline = time.monotonic() + WAIT_S
    while _lag_or_unknown(settings, group) != 0:
        assert worker.process.poll() is None, worker.tail()
        assert time.monotonic() < deadline, f"results left unconsumed\n{worker.tail()}"
        time.sleep(0.5)


async def read_topic(settings: Settings, topic: TopicSettings, at_least: int = 0) -> list:
    """Every record of the topic, from the start to its current end (or to ``at_least``)."""
    consumer = AIOKafkaConsumer(**aiokafka_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = []
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(partitions)
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if len(records) >= at_least and all(positions[tp] >= ends[tp] for tp in partitions):
                break
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def alerts_on_topic(settings: Settings, at_least: int = 0) -> list[dict]:
    records = asyncio.run(read_topic(settings, settings.topics.alerts, at_least))
    alerts = [json.loads(r.value) for r in records]
    assert all(r.key.decode() == a["entity"] for r, a in zip(records, alerts, strict=True))
    return alerts


# From test_cli.py
SIGNALYARD = [sys.executable, "-m", "signalyard"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIGNALYARD, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


# From test_observability.py


def wait_for(what: str, check: Callable[[], bool], worker: Worker, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert worker.process.poll() is None, f"the worker exited\n{worker.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{worker.tail()}"
        time.sleep(0.5)


# From test_pipeline.py


class Scored:
    """What the scored and dead-letter topics hold, read from the start."""

    def __init__(self) -> None:
        self.ids: dict[DomainName, Counter[str]] = {domain: Counter() for domain in domains.names()}
        self.results: dict[str, dict] = {}
        self.dead: list[tuple[bytes, dict[str, bytes]]] = []


async def read_until(
    settings: Settings,
    done: Callable[[Scored], bool],
    names: tuple[DomainName, ...] = domains.names(),
    timeout: float = WAIT_S,
) -> Scored:
    topics = {settings.topics.scored(domain).name: domain for domain in names}
    consumer = AIOKafkaConsumer(
        *topics,
        settings.topics.deadletter.name,
        **aiokafka_options(settings.kafka),
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    scored = Scored()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while not done(scored) and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if tp.topic in topics:
                        result = json.loads(record.value)
                        scored.ids[topics[tp.topic]][result["event_id"]] += 1
                        scored.results[result["event_id"]] = result
                    else:
                        scored.dead.append((record.value, dict(record.headers)))
    finally:
        await consumer.stop()
    return scored


def synthetic(domain: DomainName, count: int, seed: int) -> list[tuple[bytes, bytes]]:
    return list(islice(events(World(seed=seed), domain), count))


def ids_of(records: list[tuple[bytes, bytes]]) -> set[str]:
    return {json.loads(value)["id"] for _, value in records}


async def send(
    settings: Settings,
    domain: DomainName,
    records: list,
    rate: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send ``records`` to the domain's raw topic until they or ``stop`` end; how many went."""
    return await produce(settings.kafka, settings.topics.raw(domain).name, records, rate, stop)


def provision(settings: Settings) -> None:
    asyncio.run(provision_topics(settings.kafka, project_topics(settings)))


MALFORMED: list[tuple[bytes, str]] = [
    (b'{"id": "bad-1", "ts": "2024-05-01T10:00:00Z", "source": "x", "ticker": "AAPL"', "not JSON"),
    (b'{"id": "bad-2", "headline": "\xff\xfe broken"}', "invalid UTF-8"),
    (
        b'{"id": "bad-3", "ts": "2024-05-01T10:00:00Z", "source": "x", "ticker": "AAPL"}',
        "missing field headline",
    ),
    (
        b'{"id": "bad-4", "ts": "2024-05-01T10:00:00Z", "source": "x", "ticker": "AAPL", '
        b'"headline": 42}',
        "field headline",
    ),
    (
        b'{"id": "bad-5", "ts": "2024-05-01T10:00:00Z", "source": "x", "ticker": "AAPL", '
        b'"headline": "   "}',
        "at least 1 character",
    ),
    (
        b'{"id": "bad-6", "ts": "2024-05-01T10:00:00Z", "source": "x", "ticker": "AAPL", '
        b'"headline": "' + b"a" * 70_000 + b'"}',
        "exceeds the limit of 65536",
    ),
    (
        b'{"id": "bad-7", "ts": "2024-05-01T10:00:00Z", "source": "x", "ticker": "AAPL", '
        b'"headline": "h", "domain": "weather"}',
        "unknown domain 'weather'",
    ),
]


# From test_replay.py
def run_cli(settings: Settings, registry: Path, *args: str) -> Result:
    """The command in this process, configured as a user would, through SIGNALYARD_*."""
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("SIGNALYARD_")
    }
    env |= settings_environment(settings)
    env |= {"SIGNALYARD_REGISTRY_DIR": str(registry), "SIGNALYARD_INFERENCE__DEVICE": "cpu"}
    return CliRunner().invoke(cli, list(args), env=env)


async def committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**aiokafka_options(settings.kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


# From test_training.py and test_teacher_rounds.py
NEWS_WORDS = {
    "positive": ["profit soars", "record growth", "shares jump"],
    "negative": ["heavy losses", "shares plunge", "bankruptcy fears"],
    "neutral": ["meeting on monday", "annual report published", "office moves"],
}

# Tweets-like target text: the source's phrases with a cashtag and a link, labels as the source.
TARGET = [
    (f"${ticker} {phrase} https://t.co/{i}", label)
    for i, ticker in enumerate(["ACME", "BOLT", "CRUX", "DYNA"])
    for label, phrases in NEWS_WORDS.items()
    for phrase in phrases
]


# From test_training.py
def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# From test_training.py
def fast(base: Path, **overrides: object) -> TrainOptions:
    return TrainOptions(base_model=str(base), show_progress=False, max_seq_length=16, **overrides)


# From test_distillation.py
FAST = ["--max-seq-length", "16", "--batch-size", "8"]


# From test_explanations.py
async def write_events(
    sink: ClickHouseSink, event: NewsEvent, result: ScoredResult, now: datetime
) -> None:
    """``event`` and its result, and a result whose event row (id "bad") no longer parses as
    a news event: its headline is blank."""
    bad_row = {**domains.get("news").event_row(event, now), "event_id": "bad", "headline": "  "}
    await sink.write("news_events", [domains.get("news").event_row(event, now), bad_row])
    bad_result = {**result.model_dump(), "event_id": "bad"}
    await sink.write("news_scores", [result.model_dump(), bad_result])


# From test_explanations.py
def create_tables_in(settings: Settings) -> None:
    client = connect(settings.clickhouse_dsn)
    try:
        create_tables(client)
    finally:
        client.close()


# From test_explanations.py: a keyword decides each text of the keyword model (conftest.py)
FILLER = ["the", "company", "said", "on", "monday", "that", "its", "report", "shows", "news"]
KEYWORDS = {"positive": "skyrocketing", "negative": "bankruptcy", "neutral": "scheduled"}
