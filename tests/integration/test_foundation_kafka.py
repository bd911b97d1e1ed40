"""The local broker carries real traffic, and provisioning topics is idempotent."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from config.settings import Settings, TopicSettings
from streams.connection import aiokafka_options
from streams.topics import partition_count, provision_topics, topic_config

RECORDS = 3000


async def _produce_and_consume(settings: Settings) -> list[tuple[int, bytes, bytes]]:
    topic = settings.topics.news_raw
    await provision_topics(settings.kafka, [topic])
    options = aiokafka_options(settings.kafka)
    producer = AIOKafkaProducer(**options, linger_ms=5, acks="all")
    await producer.start()
    try:
        for number in range(RECORDS):
            key = f"TICK{number % 17}".encode()
            await producer.send(topic.name, key=key, value=f"event-{number}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic.name, **options, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    received: list[tuple[int, bytes, bytes]] = []
    try:
        while len(received) < RECORDS:
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=30)
            for records in batches.values():
                received += [(r.partition, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return received


def test_thousands_of_records_round_trip(kafka: Settings) -> None:
    received = asyncio.run(_produce_and_consume(kafka))
    assert sorted(value for _, _, value in received) == sorted(
        f"event-{number}".encode() for number in range(RECORDS)
    )
    partitions_by_key: dict[bytes, set[int]] = {}
    for partition, key, _ in received:
        partitions_by_key.setdefault(key, set()).add(partition)
    # One key, one partition: an entity's events stay in order.
    assert all(len(partitions) == 1 for partitions in partitions_by_key.values())
    assert len({p for ps in partitions_by_key.values() for p in ps}) > 1


async def _describe(
    settings: Settings, topics: list[TopicSettings]
) -> dict[str, tuple[int | None, dict[str, str]]]:
    admin = AIOKafkaAdminClient(**aiokafka_options(settings.kafka))
    await admin.start()
    try:
        described = {}
        for topic in topics:
            config = await topic_config(admin, topic.name)
            described[topic.name] = (
                await partition_count(admin, topic.name),
                {key: config[key] for key in ("retention.ms", "cleanup.policy")},
            )
        return described
    finally:
        await admin.close()


def test_provisioning_twice_leaves_the_same_topics(kafka: Settings) -> None:
    first = asyncio.run(provision_topics(kafka.kafka, kafka.topics.all()))
    after_first = asyncio.run(_describe(kafka, kafka.topics.all()))
    second = asyncio.run(provision_topics(kafka.kafka, kafka.topics.all()))
    after_second = asyncio.run(_describe(kafka, kafka.topics.all()))

    assert {state.action for state in first} == {"created"}
    assert {state.action for state in second} == {"unchanged"}
    assert after_first == after_second
    updates = after_first[kafka.topics.model_updates.name]
    assert updates == (1, {"retention.ms": "-1", "cleanup.policy": "compact"})
    assert after_first[kafka.topics.news_raw.name][0] == kafka.topics.news_raw.partitions


def test_provisioning_grows_partitions_and_fixes_configs(kafka: Settings) -> None:
    topic = kafka.topics.alerts
    asyncio.run(provision_topics(kafka.kafka, [topic]))
    wanted = topic.model_copy(update={"partitions": topic.partitions + 2, "retention_ms": 3600000})
    (state,) = asyncio.run(provision_topics(kafka.kafka, [wanted]))
    assert state.action == "grown"
    described = asyncio.run(_describe(kafka, [topic]))[topic.name]
    assert described == (
        topic.partitions + 2,
        {"retention.ms": "3600000", "cleanup.policy": "delete"},
    )


def test_a_configuration_the_broker_refuses_is_an_error_naming_the_topic(kafka: Settings) -> None:
    topic = kafka.topics.alerts
    asyncio.run(provision_topics(kafka.kafka, [topic]))
    # Settings validation allows no such value; a broker's own limits can refuse valid ones.
    refused = topic.model_copy(update={"retention_ms": -5})
    with pytest.raises(RuntimeError, match=rf"changing the configuration of {topic.name} failed"):
        asyncio.run(provision_topics(kafka.kafka, [refused]))
    described = asyncio.run(_describe(kafka, [topic]))[topic.name]
    assert described[1]["retention.ms"] == str(topic.retention_ms)
