"""A record batch that cannot be decoded stops no partition of the scoring consumer or of the
group consumers (alerts here; feedback shares the code): its offsets are dead-lettered with
the reason and the consumer goes on. The batch is damaged where such damage happens, in the
broker's log segment on disk: one byte of a record's value flipped, so its checksum fails."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from conftest import Worker
from helpers import (
    STREAK,
    WAIT_S,
    AlertWorker,
    provision,
    read_topic,
    read_until,
    reading,
    synthetic,
    wait_until_consumed,
)

from config.settings import Settings, load_settings
from signalyard.local.local_kafka import broker_paths
from streams.connection import aiokafka_options
from streams.deadletter import HEADER_OFFSET, HEADER_REASON, kind_from_headers
from streams.undecodable import KIND

pytestmark = pytest.mark.kafka

PER_BATCH = 20
MARK = b"damaged-"


async def produce_batches(settings: Settings, topic: str, batches: list[list[bytes]]) -> int:
    """Each list of values as one record batch, all on one key's partition; the partition."""
    producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all")
    await producer.start()
    try:
        for values in batches:
            sent = [await producer.send(topic, value, key=b"M-1") for value in values]
            await producer.flush()  # one record batch per flush: one partition, one key
        return (await sent[-1]).partition
    finally:
        await producer.stop()


def marked_readings() -> tuple[list[list[bytes]], list[list[str]]]:
    """Three batches of raw sensor readings, the middle one's ids starting with MARK."""
    readings = [json.loads(value) for _, value in synthetic("sensors", 3 * PER_BATCH, seed=11)]
    for number, event in enumerate(readings):
        if PER_BATCH <= number < 2 * PER_BATCH:
            event["id"] = MARK.decode() + event["id"]
    ids = [
        [event["id"] for event in readings[n : n + PER_BATCH]]
        for n in range(0, 3 * PER_BATCH, PER_BATCH)
    ]
    values = [
        [json.dumps(event).encode() for event in readings[n : n + PER_BATCH]]
        for n in range(0, 3 * PER_BATCH, PER_BATCH)
    ]
    return values, ids


def damage(topic: str, partition: int) -> None:
    """Flip one byte of the first value marked MARK, in the partition's segment on disk."""
    broker = load_settings()  # the suite's broker keeps its data under the suite's home
    segment_folder = broker_paths(broker.home_dir, broker.stack).data / f"{topic}-{partition}"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for segment in segment_folder.glob("*.log"):
            data = segment.read_bytes()
            at = data.find(MARK)
            if at >= 0:
                with segment.open("r+b") as handle:
                    handle.seek(at)
                    handle.write(MARK.upper()[:1])
                return
        time.sleep(0.2)
    pytest.fail(f"no segment of {segment_folder} holds the batch to damage")


def test_an_undecodable_batch_is_dead_lettered_by_offset_range_and_the_partition_goes_on(
    kafka: Settings, registry_dir: Path, tmp_path: Path
) -> None:
    provision(kafka)
    topic = kafka.topics.raw("sensors").name
    values, (before, damaged, after) = marked_readings()
    damage(topic, asyncio.run(produce_batches(kafka, topic, values)))

    worker = Worker(kafka, registry_dir, f"t-{uuid.uuid4().hex[:8]}", tmp_path / "w.log")
    try:
        worker.start("sensors")
        seen = asyncio.run(
            read_until(
                kafka,
                lambda s: set(s.ids["sensors"]) >= {*before, *after} and bool(s.dead),
                ("sensors",),
            )
        )
        assert worker.running, worker.tail()
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()
    assert set(seen.ids["sensors"]) == {*before, *after}, worker.tail()
    assert not set(damaged) & set(seen.ids["sensors"])
    assert max(seen.ids["sensors"].values()) == 1
    assert len(seen.dead) == 1, seen.dead
    assert_the_range_is_dead_lettered(*seen.dead[0])


def assert_the_range_is_dead_lettered(payload: bytes, headers: dict[str, bytes]) -> None:
    assert kind_from_headers(list(headers.items())) == KIND
    assert payload == b""
    assert int(headers[HEADER_OFFSET]) == PER_BATCH
    reason = headers[HEADER_REASON].decode()
    assert f"offsets {PER_BATCH} to {2 * PER_BATCH - 1} cannot be decoded" in reason, reason
    assert "CRC" in reason, reason


def test_the_alert_consumer_steps_past_an_undecodable_batch_of_results(
    kafka: Settings, tmp_path: Path
) -> None:
    provision(kafka)
    topic = kafka.topics.scored("sensors").name
    results = [
        reading(f"{MARK.decode() if PER_BATCH <= n < 2 * PER_BATCH else ''}r{n}", n, 0.1)
        for n in range(3 * PER_BATCH)
    ]
    values = [[r.model_dump_json().encode() for r in results[n : n + PER_BATCH]]
              for n in range(0, 3 * PER_BATCH, PER_BATCH)]  # fmt: skip
    damage(topic, asyncio.run(produce_batches(kafka, topic, values)))
    rules = tmp_path / "alerts.toml"
    rules.write_text(STREAK)

    worker = AlertWorker(kafka, rules, f"alerts-{uuid.uuid4().hex[:8]}", tmp_path / "a.log")
    try:
        worker.start()
        wait_until_consumed(kafka, worker)  # committed to the end: past the damaged batch
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()
    letters = asyncio.run(read_topic(kafka, kafka.topics.deadletter, at_least=1))
    assert len(letters) == 1, letters
    assert_the_range_is_dead_lettered(letters[0].value, dict(letters[0].headers))
