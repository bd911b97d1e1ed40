"""A scored batch is published as one record batch per partition, placed as ``send`` would."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from config.settings import Settings
from streams.connection import aiokafka_options
from streams.publishing import BatchPublisher, Outgoing
from streams.topics import provision_topics

KEYS = [f"M-{number:03d}".encode() for number in range(40)]


async def _publish_and_read(settings: Settings) -> tuple[dict[bytes, int], list, list]:
    """Where ``send`` puts each key, and the (partition, key, value, headers) published."""
    reference, published = settings.topics.news_raw, settings.topics.news_scored
    await provision_topics(settings.kafka, [reference, published])
    options = aiokafka_options(settings.kafka)
    # A small batch limit makes every partition's batch overflow into several.
    producer = AIOKafkaProducer(**options, acks="all", max_batch_size=2048)
    await producer.start()
    try:
        for key in KEYS:
            await producer.send(reference.name, b"reference", key=key)
        await producer.flush()
        publish = BatchPublisher(producer)
        messages = [
            Outgoing(
                key, f"{round_}:{key.decode()}".encode() + b" " * 300, [("round", b"%d" % round_)]
            )
            for round_ in range(5)
            for key in KEYS
        ]
        await (await publish(published.name, messages))
    finally:
        await producer.stop()
    where = {
        key: partition for partition, key, _, _ in await _read(settings, reference.name, len(KEYS))
    }
    return where, messages, await _read(settings, published.name, len(messages))


async def _read(settings: Settings, topic: str, count: int) -> list:
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_options(settings.kafka), auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list = []
    try:
        while len(records) < count:
            fetched = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=30)
            for batch in fetched.values():
                records += [(r.partition, r.key, r.value, r.headers) for r in batch]
    finally:
        await consumer.stop()
    return records


def test_published_messages_land_where_send_puts_their_keys_in_order(kafka: Settings) -> None:
    where, messages, received = asyncio.run(_publish_and_read(kafka))
    assert len(received) == len(messages)
    assert len(set(where.values())) > 1
    for partition, key, _, _ in received:
        assert partition == where[key]
    for key in KEYS:
        values = [value for _, own, value, _ in received if own == key]
        assert values == [m.value for m in messages if m.key == key]  # in publishing order
    assert {headers for _, _, _, headers in received} == {
        (("round", b"%d" % round_),) for round_ in range(5)
    }
