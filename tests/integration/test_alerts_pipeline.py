"""Alerting end to end: real broker, alert worker processes, embedded ClickHouse.

No models: crafted scored results with known event times go straight onto the scored topics,
and the alerts they must fire are known in advance (``tests/unit/test_alert_rules.py`` proves the
rule logic itself). The workers are the pipeline tests' ``Worker`` running the alert agents
only; a store is read only after its worker has exited (one process per embedded ClickHouse).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from conftest import query
from helpers import (
    HIGH_RISK,
    SENTIMENT,
    STREAK,
    WAIT_S,
    AlertWorker,
    Folder,
    _lag_or_unknown,
    alerts_on_topic,
    provision,
    read_topic,
    reading,
    reading_stream,
    sentiment_stream,
    ticket_stream,
    wait_until_consumed,
)

import domains
from config.settings import Settings, TopicSettings
from domains.base import ScoredResult
from streams.alerting.alert import alert_id
from streams.connection import aiokafka_options
from streams.deadletter import HEADER_REASON, kind_from_headers
from streams.producer import produce

pytestmark = pytest.mark.kafka


NewWorker = Callable[[str], AlertWorker]


@pytest.fixture
def alert_workers(kafka: Settings, tmp_path: Path) -> Iterator[NewWorker]:
    """Makes alert workers of one app id (consumer group) on the test's settings."""
    made: list[AlertWorker] = []
    app_id = f"alerts-{uuid.uuid4().hex[:8]}"
    rules = tmp_path / "alerts.toml"
    rules.write_text(SENTIMENT + HIGH_RISK + STREAK)

    def new(name: str) -> AlertWorker:
        made.append(AlertWorker(kafka, rules, app_id, tmp_path / f"{name}.log"))
        return made[-1]

    provision(kafka)
    yield new
    for worker in made:
        worker.cleanup()


def record(domain: str, result: ScoredResult) -> tuple[bytes, bytes]:
    return getattr(result, domains.get(domain).entity).encode(), result.model_dump_json().encode()


async def send(settings: Settings, domain: str, results: list, rate: float | None = None) -> None:
    records = [r if isinstance(r, tuple) else record(domain, r) for r in results]
    await produce(settings.kafka, settings.topics.scored(domain).name, records, rate)


def alerts_in_clickhouse(settings: Settings) -> dict[str, tuple]:
    rows = query(
        settings,
        "SELECT alert_id, count(), any(rule), any(entity), any(evidence), any(model_version) "
        "FROM alerts FINAL GROUP BY alert_id",
    )
    assert all(row[1] == 1 for row in rows)
    return {row[0]: row[2:] for row in rows}


class Tail:
    """A ``signalyard alerts tail`` process; its lines are collected as they are printed."""

    def __init__(self, env: dict[str, str], *options: str) -> None:
        command = [sys.executable, "-m", "signalyard", "alerts", "tail", *options]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # A suite started as a background job of a non-interactive shell passes SIGINT on
            # ignored, and Python then leaves it ignored: the tail must get Ctrl-C as a user's.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        # A daemon: a test that fails before stop() must not keep pytest from exiting.
        self.reader = threading.Thread(
            target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True
        )
        self.reader.start()
        ready = self.process.stderr.readline()  # once positioned, every later alert shows
        assert ready.startswith("tailing "), ready + self.process.stderr.read()

    def stop(self, lines: int) -> list[str]:
        """The first ``lines`` lines, and any that follow within a second; then Ctrl-C."""
        deadline = time.monotonic() + 30
        while len(self.lines) < lines and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        self.process.send_signal(signal.SIGINT)
        # Stopping its consumer can take seconds on a busy machine; 10 s proved too short.
        assert self.process.wait(timeout=45) == 0
        self.reader.join(timeout=10)
        return self.lines


def by_id(alert: dict) -> str:
    return alert["alert_id"]


EXPECTED = {
    ("drop", "news", "ACME", "n5"),
    ("drop", "news", "ACME", "n11"),
    ("risky", "tickets", "c-1", "a4"),
    ("risky", "tickets", "c-1", "a8"),
    ("streak", "sensors", "M-1", "r3"),
    ("failure-rate", "sensors", "M-1", "r3"),
}


def test_a_crafted_stream_fires_exactly_the_expected_alerts(
    kafka: Settings, alert_workers: NewWorker
) -> None:
    settings = kafka
    asyncio.run(send(settings, "news", sentiment_stream()))
    asyncio.run(send(settings, "tickets", [*ticket_stream()[:4], (b"c-1", b'{"event_id": "x"}')]))
    asyncio.run(send(settings, "tickets", ticket_stream()[4:]))
    asyncio.run(send(settings, "sensors", reading_stream()))

    worker = alert_workers("one")
    live = Tail(worker.env, "--json")
    worker.start()
    wait_until_consumed(settings, worker)
    on_topic = alerts_on_topic(settings, at_least=len(EXPECTED))
    assert worker.stop() == 0, worker.tail()
    # A subscriber that was there before the first alert saw each one as it arrived.
    seen_live = [json.loads(line) for line in live.stop(lines=len(EXPECTED))]
    assert sorted(seen_live, key=by_id) == sorted(on_topic, key=by_id)

    found = {
        (a["rule"], a["domain"], a["entity"], a["evidence"]["trigger_event_id"]) for a in on_topic
    }
    assert found == EXPECTED and len(on_topic) == len(EXPECTED), worker.tail()
    by_trigger = {(a["rule"], a["evidence"]["trigger_event_id"]): a for a in on_topic}
    risky = by_trigger[("risky", "a4")]
    assert risky["alert_id"] == alert_id("tickets", "risky", "c-1", "a4")
    assert risky["evidence"]["event_ids"] == ["a1", "a3", "a4"]
    assert (risky["severity"], risky["model_version"]) == ("critical", "v7")
    assert risky["ts"].startswith("2026-03-02T10:49:00")
    assert by_trigger[("drop", "n5")]["evidence"]["count"] == 6
    # One entity's alerts keep their order: the cool-down's second alert comes second.
    assert [a["evidence"]["trigger_event_id"] for a in on_topic if a["entity"] == "c-1"] == [
        "a4",
        "a8",
    ]

    stored = alerts_in_clickhouse(settings)
    assert set(stored) == {a["alert_id"] for a in on_topic}
    assert json.loads(stored[risky["alert_id"]][2]) == risky["evidence"]

    letters = asyncio.run(read_topic(settings, settings.topics.deadletter, at_least=1))
    assert [letter.value for letter in letters] == [b'{"event_id": "x"}']
    assert kind_from_headers(letters[0].headers) == "invalid scored result"
    reason = dict(letters[0].headers)[HEADER_REASON].decode()
    assert reason.startswith("not a tickets scored result: missing field ts")

    critical = Tail(worker.env, "--from-beginning", "--json", "--severity", "critical")
    assert sorted(
        (json.loads(line)["rule"], json.loads(line)["entity"]) for line in critical.stop(lines=3)
    ) == [("risky", "c-1"), ("risky", "c-1"), ("streak", "M-1")]
    news = Tail(worker.env, "--from-beginning", "--domain", "news").stop(lines=2)
    assert len(news) == 2 and all("ACME" in line and "drop" in line for line in news), news


def machine_streams(machines: int, minutes: range, seed: int) -> dict[str, list]:
    rng = random.Random(seed)
    return {
        f"M-{m}": [
            reading(f"M-{m}-{t}", t, rng.choice([0.1, 0.3, 0.6, 0.85, 0.95]), f"M-{m}")
            for t in minutes
        ]
        for m in range(machines)
    }


def interleave(streams: dict[str, list]) -> list:
    return [result for step in zip(*streams.values(), strict=True) for result in step]


def test_restarts_neither_lose_nor_repeat_alerts(kafka: Settings, alert_workers: NewWorker) -> None:
    """SIGKILL mid-stream, then SIGTERM: every alert arrives, each under one id, once in
    ClickHouse; cool-downs and windows carry over the restarts through the changelog."""
    settings = kafka
    first = machine_streams(24, range(0, 50), seed=5)
    second = machine_streams(24, range(50, 70), seed=6)
    for m, results in second.items():
        # A streak that spans the SIGTERM restart: only a recovered window sees it.
        first[m][-1] = reading(f"{m}-49", 49, 0.97, m)
        first[m][-2] = reading(f"{m}-48", 48, 0.2, m)
        results[0] = reading(f"{m}-50", 50, 0.97, m)
    expected: dict[str, tuple] = {}
    folder = Folder(STREAK)
    for results in (interleave(first), interleave(second)):
        expected |= {a.alert_id: (a.rule, a.entity) for a in folder.fold(results)}
    spanning = {a for a, (rule, _) in expected.items() if rule == "streak"} & {
        alert_id("sensors", "streak", m, f"{m}-50") for m in second
    }
    assert spanning, "the data must have streaks across the restart"

    async def feed_and_kill(worker_name: str) -> tuple[int, AlertWorker]:
        worker = alert_workers(worker_name).start()
        # Slow enough that the worker cannot be done before a quarter of the alerts are out.
        feeding = asyncio.create_task(send(settings, "sensors", interleave(first), rate=100))
        deadline = time.monotonic() + WAIT_S
        seen = 0
        while seen < len(expected) // 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            seen = len(await read_topic(settings, settings.topics.alerts))
        worker.kill()
        await feeding
        return seen, worker

    seen, killed = asyncio.run(feed_and_kill("killed"))
    assert len(expected) // 4 <= seen < len(expected), (seen, len(expected), killed.tail())
    # Results the killed worker left are the restarted one's: the kill came mid-stream.
    assert _lag_or_unknown(settings, f"{killed.app_id}-alerts") != 0

    restarted = alert_workers("restarted").start()
    wait_until_consumed(settings, restarted)
    assert restarted.stop() == 0, restarted.tail()

    asyncio.run(send(settings, "sensors", interleave(second)))
    last = alert_workers("last").start()
    wait_until_consumed(settings, last)
    on_topic = alerts_on_topic(settings, at_least=len(expected))
    assert last.stop() == 0, last.tail()

    counts = Counter(a["alert_id"] for a in on_topic)
    assert set(counts) == set(expected), (len(counts), len(expected))  # none lost, none new
    repeated = {a for a, n in counts.items() if n > 1}
    print(f"{len(expected)} alerts, {len(repeated)} sent twice across the SIGKILL")
    assert {a["alert_id"]: (a["rule"], a["entity"]) for a in on_topic} == expected
    assert set(alerts_in_clickhouse(settings)) == set(expected)


def test_an_entity_no_result_reached_for_the_ttl_is_forgotten_in_its_changelog(
    kafka: Settings, alert_workers: NewWorker
) -> None:
    """Kafka time is the clock: one machine's results are stamped two days before another's,
    on the same partition.
    The rules' window and cool-down (1.5 h) outlast the 1 s ttl asked for, and a day does not."""
    settings = kafka
    worker = alert_workers("ttl")
    worker.env["SIGNALYARD_ALERTS__STATE_TTL_S"] = "1"
    now_ms = int(time.time() * 1000)
    old = [reading(f"old-{n}", n, 0.3, "M-OLD") for n in range(3)]
    new = [reading(f"new-{n}", n, 0.3, "M-NEW") for n in range(3)]

    async def stamped() -> None:
        producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all")
        await producer.start()
        try:
            for results, at_ms in ((old, now_ms - 2 * 86_400_000), (new, now_ms)):
                for result in results:
                    key, value = record("sensors", result)
                    topic = settings.topics.scored("sensors").name
                    # One partition: its Kafka time is the clock of the entities on it.
                    await producer.send_and_wait(
                        topic, value, key=key, partition=0, timestamp_ms=at_ms
                    )
        finally:
            await producer.stop()

    asyncio.run(stamped())
    worker.start()
    wait_until_consumed(settings, worker)
    assert worker.stop() == 0, worker.tail()
    name = f"{worker.app_id}-alert-state-sensors-changelog"
    topic = TopicSettings(name=name, partitions=settings.topics.scored("sensors").partitions)
    log = [(r.key, r.value) for r in asyncio.run(read_topic(settings, topic))]
    tombstones = {key for key, value in log if value is None}
    assert b"M-OLD" in tombstones and b"M-NEW" not in tombstones, log
    assert {json.dumps(["M-OLD", r.event_id]).encode() for r in old} <= tombstones
    assert all(b"M-NEW" not in key for key in tombstones)
