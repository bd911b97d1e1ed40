"""Publishing a scored batch: one record batch per partition instead of one send per result.

Each ``producer.send`` costs a future per record that the producer resolves one by one when
the broker acknowledges; at thousands of results a second that bookkeeping alone costs more
than validating the events. Here the messages of one call are partitioned by key exactly as
``send`` would (murmur2, Kafka's default partitioner), appended in order to one record batch
per partition, and each batch is acknowledged as a whole. The order of the messages of one
key is kept, within a call and across calls. A stream has far fewer keys than records, so
each key's murmur2 hash (pure Python in aiokafka) is computed once and remembered.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder


@dataclass(frozen=True, slots=True)
class Outgoing:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    # The input record's (topic, partition) it comes from: under exactly_once it is sent in
    # that partition's transaction (streams.transactions).
    source: tuple[str, int] | None = None


class Publish(Protocol):
    async def __call__(self, topic: str, messages: Sequence[Outgoing]) -> Awaitable[Any]:
        """Queue the messages; the returned awaitable completes once the broker has them all."""
        ...


class BatchPublisher:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.partitioner = DefaultPartitioner()

    async def __call__(self, topic: str, messages: Sequence[Outgoing]) -> Awaitable[Any]:
        if not messages:
            return asyncio.gather()
        partitions = sorted(await self.producer.partitions_for(topic))
        by_partition: dict[int, list[Outgoing]] = {}
        for message in messages:
            partition = (
                self.partitioner(None, partitions, partitions)
                if message.key is None
                else partitions[key_hash(message.key) % len(partitions)]
            )
            by_partition.setdefault(partition, []).append(message)
        acks = []
        for partition, own in by_partition.items():
            batch = self.producer.create_batch()
            for message in own:
                if self._append(batch, message) is None:  # full: send it, start the next
                    acks.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    self._append(batch, message)  # a batch always takes its first record
            acks.append(await self.producer.send_batch(batch, topic, partition=partition))
        return asyncio.gather(*acks)

    @staticmethod
    def _append(batch: BatchBuilder, message: Outgoing) -> object | None:
        return batch.append(
            key=message.key, value=message.value, timestamp=None, headers=message.headers
        )


@functools.lru_cache(maxsize=65_536)
def key_hash(key: bytes) -> int:
    """Kafka's default partitioner's hash of a record key: its partition is this modulo the
    topic's partition count (the Java client's and aiokafka's ``DefaultPartitioner``)."""
    return murmur2(key) & 0x7FFFFFFF
