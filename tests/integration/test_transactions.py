"""Upstream transactions: what an aborted transaction wrote is never scored, alerted on or
replayed, and committed offsets still reach the end of each partition past the markers.

Each topic gets, from a transactional producer: a committed transaction, an aborted one, a
committed one, then a record of a plain producer (real broker, worker processes).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from conftest import query
from helpers import (
    STREAK,
    AlertWorker,
    Worker,
    alerts_on_topic,
    committed,
    ids_of,
    provision,
    read_until,
    reading,
    run_cli,
    synthetic,
    wait_until_consumed,
)

from config.settings import Settings
from streams.connection import aiokafka_options, consumer_options

pytestmark = pytest.mark.kafka

Record = tuple[bytes, bytes]


async def transactions(
    settings: Settings, topic: str, parts: list[tuple[str, list[Record]]]
) -> None:
    """Write each part as ``commit``, ``abort`` (transactions) or ``plain`` records, in order."""
    options = aiokafka_options(settings.kafka)
    transactional = AIOKafkaProducer(**options, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    plain = AIOKafkaProducer(**options, acks="all")
    await transactional.start()
    await plain.start()
    try:
        for how, records in parts:
            if how == "plain":
                for key, value in records:
                    await (await plain.send(topic, value, key=key))
                continue
            await transactional.begin_transaction()
            acks = [await transactional.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*acks)
            if how == "commit":
                await transactional.commit_transaction()
            else:
                await transactional.abort_transaction()
    finally:
        await transactional.stop()
        await plain.stop()


async def lag(settings: Settings, group: str, topic: str, partitions: int) -> int:
    """Records of ``topic`` past the group's committed offsets, markers included."""
    consumer = AIOKafkaConsumer(**consumer_options(settings.kafka))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    offsets = await committed(settings, group)
    return sum(end - offsets.get(tp, 0) for tp, end in ends.items())


def four_parts(records: list[Record]) -> tuple[list[tuple[str, list[Record]]], set[str]]:
    """Committed, aborted, committed, plain; and the event ids that must be scored."""
    a, b, c, d = records[:10], records[10:20], records[20:30], records[30:33]
    return [("commit", a), ("abort", b), ("commit", c), ("plain", d)], ids_of(a + c + d)


def test_aborted_raw_events_are_neither_scored_nor_replayed(
    kafka: Settings, registry_dir: Path, tmp_path: Path
) -> None:
    settings = kafka
    provision(settings)
    topic = settings.topics.sensors_raw
    parts, expected = four_parts(synthetic("sensors", 33, seed=41))
    asyncio.run(transactions(settings, topic.name, parts))

    app_id = f"t-{uuid.uuid4().hex[:8]}"
    worker = Worker(settings, registry_dir, app_id, tmp_path / "worker.log")
    group = settings.pipeline.model_copy(update={"app_id": app_id}).scoring_group
    try:
        worker.start("sensors")
        scored = asyncio.run(
            read_until(settings, lambda s: len(s.ids["sensors"]) >= len(expected), ("sensors",))
        )
        for _ in range(60):  # the commit past the last marker follows its fetch
            if asyncio.run(lag(settings, group, topic.name, topic.partitions)) == 0:
                break
            time.sleep(0.5)
        assert asyncio.run(lag(settings, group, topic.name, topic.partitions)) == 0
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()
    assert set(scored.ids["sensors"]) == expected, worker.tail()
    rows = query(settings, "SELECT event_id FROM sensors_events FINAL")
    assert {row[0] for row in rows} == expected

    result = run_cli(
        settings, registry_dir, "replay", "sensors", "--from", "2000-01-01", "--to", "2200-01-01",
        "--run-id", "tx",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    replayed = query(settings, "SELECT event_id FROM backtest_sensors_scores FINAL")
    assert {row[0] for row in replayed} == expected


def test_aborted_scored_results_fire_no_alert(kafka: Settings, tmp_path: Path) -> None:
    settings = kafka
    provision(settings)
    rules = tmp_path / "alerts.toml"
    rules.write_text(STREAK)
    app_id = f"alerts-{uuid.uuid4().hex[:8]}"
    worker = AlertWorker(settings, rules, app_id, tmp_path / "alerts.log")
    topic = settings.topics.sensors_scored

    def streak(machine: str, start: int) -> list[Record]:
        results = [reading(f"{machine}-{start + i}", start + i, 0.95, machine) for i in range(2)]
        return [(machine.encode(), r.model_dump_json().encode()) for r in results]

    parts = [
        ("commit", streak("M-1", 0)),
        ("abort", streak("M-2", 0)),  # would fire, had it happened
        ("commit", streak("M-3", 0)),
        ("plain", streak("M-4", 0)),
    ]
    asyncio.run(transactions(settings, topic.name, parts))
    try:
        worker.start()
        wait_until_consumed(settings, worker)  # lag 0 on every scored partition
        fired = alerts_on_topic(settings, at_least=3)
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()
    assert sorted(a["entity"] for a in fired if a["rule"] == "streak") == ["M-1", "M-3", "M-4"]
    assert all(json.dumps(a).count("M-2") == 0 for a in fired)
