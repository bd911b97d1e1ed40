"""Kafka transactions per input partition: how ``exactly_once`` processing writes.

Under ``pipeline.processing_guarantee = "exactly_once"`` everything a consumer sends because
of records of an input partition (results, dead letters, alerts, alert-state changelog) goes
out through a transactional producer that belongs to that partition, and the consumer's
offset for the partition is added to the same transaction (``send_offsets_to_transaction``).
The outputs and the offset become visible together or not at all: a ``read_committed``
reader never sees what a crashed worker sent after its last commit, and the worker that
takes the partition over reads those records again from the committed offset.

Fencing zombies: the producer of input partition P of group G has the transactional id
``G-<topic>-<P>``. The worker given P starts that producer; ``init_transactions`` bumps the
id's epoch, the broker aborts the previous owner's open transaction and refuses any later
send or commit of the previous owner (``ProducerFenced``). One id per input partition is
what fences with aiokafka, whose transactional offset commits carry no group generation
(KIP-447 is not implemented there): it is how Kafka Streams fenced before ``exactly_once_v2``,
and how Faust does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from config.settings import KafkaSettings
from streams.connection import aiokafka_options

log = logging.getLogger(__name__)

# The producer of the input partition being handled, for sends that do not say (see ``scope``).
_in_scope: ContextVar[AIOKafkaProducer | None] = ContextVar("transactional_producer", default=None)


def producer_in_scope() -> AIOKafkaProducer | None:
    """The transactional producer of the input partition handled in this context, if any."""
    return _in_scope.get()


def transactional_id(group: str, partition: TopicPartition) -> str:
    """The transactional id of ``partition``'s producer in ``group``."""
    return f"{group}-{partition.topic}-{partition.partition}"


class PartitionTransactions:
    """One transactional producer per owned input partition, always inside a transaction.

    ``assign`` starts the producers of new partitions (fencing their previous owners),
    ``producer`` gives the one to send a partition's outputs with, ``commit`` commits each
    producer's transaction with its partition's offset and opens the next one, ``revoke``
    stops producers of partitions that go away. Errors (``ProducerFenced`` above all) are
    the caller's: a worker that cannot commit has lost its partitions or its broker, and
    must not go on as if it had written.
    """

    def __init__(self, kafka: KafkaSettings, group: str, **producer_options: Any) -> None:
        self.kafka = kafka
        self.group = group
        self.producer_options = producer_options
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._sent: set[TopicPartition] = set()  # partitions whose transaction has outputs

    def owned(self) -> set[TopicPartition]:
        return set(self._producers)

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Start (and fence the previous owners of) the producers of ``partitions``."""
        new = [tp for tp in partitions if tp not in self._producers]
        producers = {
            tp: AIOKafkaProducer(
                **aiokafka_options(self.kafka),
                **self.producer_options,
                acks="all",
                transactional_id=transactional_id(self.group, tp),
            )
            for tp in new
        }
        await asyncio.gather(*(producer.start() for producer in producers.values()))
        for producer in producers.values():
            await producer.begin_transaction()
        self._producers.update(producers)
        if new:
            log.info("%s: %d transactional producers started", self.group, len(new))

    def producer(self, partition: TopicPartition) -> AIOKafkaProducer:
        """The producer for outputs of ``partition``'s records; they commit with its offset."""
        self._sent.add(partition)
        return self._producers[partition]

    @contextmanager
    def scope(self, partition: TopicPartition) -> Iterator[AIOKafkaProducer]:
        """Within the block (and tasks it starts), ``producer_in_scope`` is the partition's."""
        token = _in_scope.set(self.producer(partition))
        try:
            yield self._producers[partition]
        finally:
            _in_scope.reset(token)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the transactions that sent anything or move an offset, each with its
        partition's offset (the next record to read); then open the next ones."""
        due = (self._sent | set(offsets)) & set(self._producers)
        await asyncio.gather(*(self._commit_one(tp, offsets.get(tp)) for tp in due))
        self._sent -= due

    async def _commit_one(self, partition: TopicPartition, offset: int | None) -> None:
        producer = self._producers[partition]
        if offset is not None:
            await producer.send_offsets_to_transaction({partition: offset}, self.group)
        await producer.commit_transaction()
        await producer.begin_transaction()

    async def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop the producers of ``partitions``; a transaction left open is aborted."""
        gone = [self._producers.pop(tp) for tp in partitions if tp in self._producers]
        self._sent -= set(partitions)
        await asyncio.gather(*(_close(producer) for producer in gone))

    async def stop(self) -> None:
        await self.revoke(list(self._producers))


async def _close(producer: AIOKafkaProducer) -> None:
    try:
        await producer.abort_transaction()
    except KafkaError as error:  # fenced, or the broker is gone: the next owner aborts it
        log.warning("transaction left for the next owner to abort: %s", error)
    finally:
        await producer.stop()


class TransactionGate:
    """Keeps a commit from landing in the middle of a delivery.

    A delivery sends its batch inside ``delivering()``; ``committing()`` waits until none is
    inside and lets none in until the commit is done, so every delivery's outputs fall
    wholly into one transaction, the one that also commits its offsets.
    """

    def __init__(self) -> None:
        self._inside = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def delivering(self) -> Any:
        while not self._open.is_set():
            await self._open.wait()
        self._inside += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inside -= 1
            if not self._inside:
                self._idle.set()

    @asynccontextmanager
    async def committing(self) -> Any:
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()
