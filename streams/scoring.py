"""The scoring consumer: raw events in micro-batches, scored, delivered, then committed.

Each worker reads the raw topics of its domains with one aiokafka consumer in the group
``<app_id>-scoring``; workers of the same app id split those partitions between them. Per
domain three stages run concurrently, so that none waits on the others more than it must:

* the reader hands each fetched run of records to the domain's micro-batcher;
* one scoring task takes batch after batch and scores it (the model runs in a thread);
* each scored batch is delivered by its own task (Kafka sends and ClickHouse writes, which
  the sink groups across batches); only then do its offsets become committable.

A partition's commit never passes a record still in flight (``commits.CommitTracker``). At
most ``max_batches_in_flight`` batches wait for delivery; beyond that scoring waits, then the
batcher fills up and reading waits: back-pressure reaches the consumer instead of memory.
Before partitions are handed to another worker, and when the worker stops, everything read
is delivered and committed first, so a clean hand-over neither drops nor repeats an event; a
crash replays from the last commit, and ClickHouse collapses the replayed rows. A fetch that
cannot be decoded (``streams.undecodable``) is scored up to the undecodable record batch,
whose offsets become one dead letter; the partition goes on after it.

Why not a Faust agent: Faust hands every message through its stream machinery one by one (a
lock, two tasks and an event each), so a bare agent that only acknowledges its messages takes
a whole core at a fraction of the rate this consumer scores at, leaving nothing for
validation, scoring and delivery. Batches straight from aiokafka cost a few microseconds per
record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.errors import IllegalStateError, KafkaError
from mode import Service

from config.settings import DomainName, Settings
from streams.batching import MicroBatcher
from streams.commits import CommitTracker, Partition, Ticket
from streams.connection import aiokafka_options, group_member_options
from streams.group_consumer import Rebalance
from streams.observability.metrics import PipelineMetrics
from streams.processor import (
    BatchProcessor,
    Destinations,
    PreparedBatch,
    ScorerHolder,
    Sink,
    SourceRecord,
)
from streams.publishing import BatchPublisher, Outgoing
from streams.shared import exit_fatally, exit_on_failure
from streams.transactions import PartitionTransactions, TransactionGate
from streams.undecodable import DECODE_ERRORS, UndecodableRange, dead_letter, locate
from streams.validation import EventLimits

log = logging.getLogger(__name__)


# One record batch per partition holds a scored batch of a few hundred results.
PRODUCE_BATCH_BYTES = 256 * 1024
# How often a stop or a hand-over checks whether everything read has been delivered.
DRAIN_POLL_S = 0.01


class DomainScoring:
    """One domain's micro-batcher, scoring task and delivery tasks."""

    def __init__(
        self,
        processor: BatchProcessor,
        batcher: MicroBatcher[SourceRecord],
        max_batches_in_flight: int,
        tracker: CommitTracker,
        metrics: PipelineMetrics,
        on_delivered: Callable[[], None],
        gate: TransactionGate,
    ) -> None:
        self.processor = processor
        self.batcher = batcher
        self.tracker = tracker
        self.metrics = metrics
        self.on_delivered = on_delivered
        self.gate = gate
        self.scoring = False  # a batch has left the batcher and has no delivery task yet
        self.deliveries: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(max_batches_in_flight)

    @property
    def domain(self) -> DomainName:
        return self.processor.domain

    def idle(self) -> bool:
        """Whether everything handed to this domain has been delivered."""
        return not self.batcher and not self.scoring and not self.deliveries

    async def score_until_cancelled(self) -> None:
        while True:
            records = await self.batcher.next_batch()
            self.scoring = True
            await self.slots.acquire()
            ticket = self.tracker.register(last_offsets(records))
            started = time.perf_counter()
            prepared = await self.processor.prepare(records)
            self.metrics.scored(self.domain, len(records), time.perf_counter() - started)
            delivery = asyncio.create_task(
                self._deliver(prepared, ticket), name=f"deliver-{self.domain}"
            )
            delivery.add_done_callback(exit_on_failure)
            self.deliveries.add(delivery)
            delivery.add_done_callback(self.deliveries.discard)
            self.scoring = False

    async def skip(self, bad: UndecodableRange) -> None:
        """Once everything handed over before is delivered, deliver the dead letter of a range
        that cannot be decoded; its offsets are then committable as if scored."""
        while not self.idle():
            await asyncio.sleep(DRAIN_POLL_S)
        ticket = self.tracker.register({(bad.partition.topic, bad.partition.partition): bad.last})
        await self.slots.acquire()
        await self._deliver(PreparedBatch(dead_letters=[dead_letter(bad)]), ticket)

    async def _deliver(self, prepared: PreparedBatch, ticket: Ticket) -> None:
        try:
            async with self.gate.delivering():
                await self.processor.deliver(prepared)
            self.metrics.delivered(self.domain, prepared)
            self.tracker.delivered(ticket)
            self.on_delivered()
        finally:
            self.slots.release()

    def cancel(self) -> None:
        for delivery in self.deliveries:
            delivery.cancel()


def last_offsets(records: Sequence[SourceRecord]) -> dict[Partition, int]:
    """Per partition, the offset of its last record in the batch (records are in read order)."""
    return {(record.topic, record.partition): record.offset for record in records}


class ScoringConsumer(Service):
    """Reads, scores and delivers the raw topics of the worker's domains; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        scorers: Mapping[DomainName, ScorerHolder],
        executors: Mapping[DomainName, Executor],
        sink: Sink,
        metrics: PipelineMetrics,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.group = settings.pipeline.scoring_group
        self.guarantee = settings.pipeline.processing_guarantee
        self.tracker = CommitTracker()
        # exactly_once: each raw partition's outputs and offsets commit in its own transaction.
        self.transactions = (
            PartitionTransactions(settings.kafka, self.group, max_batch_size=PRODUCE_BATCH_BYTES)
            if self.guarantee == "exactly_once"
            else None
        )
        self.gate = TransactionGate()
        self._ready: set[TopicPartition] = set()  # assigned, and ready to deliver
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._delivered_since_commit = asyncio.Event()
        self._handing_over = asyncio.Lock()
        self._committing = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self.domains = {
            settings.topics.raw(domain).name: DomainScoring(
                BatchProcessor(
                    domain=domain,
                    scorer=holder,
                    executor=executors[domain],
                    publish=self._publish,
                    sink=sink,
                    destinations=Destinations(
                        scored_topic=settings.topics.scored(domain).name,
                        deadletter_topic=settings.topics.deadletter.name,
                        events_table=f"{domain}_events",
                        scores_table=f"{domain}_scores",
                    ),
                    limits=EventLimits.of(settings.pipeline),
                    guarantee=self.guarantee,
                ),
                MicroBatcher(limits.max_batch_size, limits.max_wait_ms / 1000),
                settings.pipeline.max_batches_in_flight,
                self.tracker,
                metrics,
                self._delivered_since_commit.set,
                self.gate,
            )
            for domain, holder in scorers.items()
            for limits in [settings.batching.of(domain)]
        }

    def assignment(self) -> set[TopicPartition]:
        """The raw partitions this worker scores now; none before it has joined the group."""
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's end offset as of the last fetch, if it was fetched from yet."""
        return self._consumer.highwater(partition) if self._consumer is not None else None

    def committed_offset(self, partition: TopicPartition) -> int | None:
        """The last offset this worker committed for the partition, if any."""
        return self.tracker.committed_offset((partition.topic, partition.partition))

    async def on_start(self) -> None:
        kafka = self.settings.kafka
        if self.transactions is None:
            self._producer = AIOKafkaProducer(
                **aiokafka_options(kafka), acks="all", max_batch_size=PRODUCE_BATCH_BYTES
            )
            await self._producer.start()
            self._publisher = BatchPublisher(self._producer)
        self._consumer = AIOKafkaConsumer(
            **group_member_options(kafka, self.group, self.settings.pipeline.session_timeout_s)
        )
        self._consumer.subscribe(
            list(self.domains), listener=Rebalance(self.hand_over, self._assigned)
        )
        await self._consumer.start()
        self._background = [
            self._spawn(scoring.score_until_cancelled(), f"score-{scoring.domain}")
            for scoring in self.domains.values()
        ]
        self._background.append(self._spawn(self._commit_until_cancelled(), "commit-scored"))
        self._reader = self._spawn(self._read_until_cancelled(), "read-raw")

    async def on_stop(self) -> None:
        """Stop reading; deliver and commit what was read (within the session timeout); leave."""
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        try:
            await asyncio.wait_for(
                self._until_delivered(), self.settings.pipeline.session_timeout_s
            )
            await self._commit()
        except TimeoutError:
            log.warning("stopping with records undelivered; they will be read again")
        for task in self._background:
            task.cancel()
        for scoring in self.domains.values():
            scoring.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self.transactions is not None:
            await self.transactions.stop()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(exit_on_failure)
        return task

    async def _publish(self, topic: str, messages: Sequence[Outgoing]) -> Awaitable[Any]:
        if self.transactions is None:
            assert self._publisher is not None, "the scoring consumer has not started"
            return await self._publisher(topic, messages)
        by_source: dict[TopicPartition, list[Outgoing]] = {}
        for message in messages:
            assert message.source is not None, "under exactly_once every output names its source"
            by_source.setdefault(TopicPartition(*message.source), []).append(message)
        acks = [
            await BatchPublisher(self.transactions.producer(source))(topic, own)
            for source, own in by_source.items()
        ]
        return asyncio.gather(*acks)

    async def _read_until_cancelled(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        # A few batches per fetch: enough to keep the batchers full, little to hand over.
        limit = 4 * max(scoring.batcher.max_size for scoring in self.domains.values())
        while True:
            try:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=limit)
            except DECODE_ERRORS as error:
                await self._step_past(error)
                continue
            async with self._handing_over:
                # A partition revoked meanwhile is not owned: its new owner reads it.
                for partition in consumer.assignment():
                    records = fetched.get(partition, [])
                    if partition not in self._ready:  # fetched before its take-over ended
                        if records:
                            consumer.seek(partition, records[0].offset)
                        continue
                    if records:
                        await self.domains[partition.topic].batcher.put_many(records)
                    try:
                        position = await consumer.position(partition)
                    except IllegalStateError:  # unassigned meanwhile
                        continue
                    last = records[-1].offset if records else None
                    if self.tracker.read((partition.topic, partition.partition), position, last):
                        self._delivered_since_commit.set()

    async def _step_past(self, error: Exception) -> None:
        """Score the records before an undecodable batch, dead-letter its range, seek past."""
        assert self._consumer is not None
        consumer = self._consumer
        async with self._handing_over:
            owned = consumer.assignment() & self._ready
            for located in await locate(self.settings.kafka, consumer, owned, error):
                bad = located.undecodable
                log.error("%s[%d]: %s", *bad.partition, dead_letter(bad).reason)
                scoring = self.domains[bad.partition.topic]
                if located.readable:
                    await scoring.batcher.put_many(located.readable)
                await scoring.skip(bad)
                consumer.seek(bad.partition, bad.last + 1)

    async def _until_delivered(self) -> None:
        while not all(scoring.idle() for scoring in self.domains.values()):
            await asyncio.sleep(DRAIN_POLL_S)

    async def _commit_until_cancelled(self) -> None:
        interval = self.settings.pipeline.commit_interval_ms / 1000
        while True:
            await self._delivered_since_commit.wait()
            self._delivered_since_commit.clear()
            await self._commit()
            await asyncio.sleep(interval)

    async def _commit(self) -> None:
        assert self._consumer is not None
        if self.transactions is not None:
            await self._commit_transactions(self.transactions)
            return
        async with self._committing:
            offsets = self._offsets_to_commit()
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except KafkaError as error:
                # Rebalancing: the hand-over before partitions move commits what was delivered.
                log.warning("commit of scored offsets deferred: %s", error)
                return
            self.tracker.committed({(tp.topic, tp.partition): o for tp, o in offsets.items()})

    def _offsets_to_commit(self) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        owned = self._consumer.assignment()
        return {
            TopicPartition(*partition): offset
            for partition, offset in self.tracker.to_commit().items()
            if TopicPartition(*partition) in owned
        }

    async def _commit_transactions(self, transactions: PartitionTransactions) -> None:
        """Commit each partition's transaction with its offset, between deliveries: every
        delivered batch's outputs are in the transaction that commits its offsets."""
        async with self._committing, self.gate.committing():
            offsets = self._offsets_to_commit()
            try:
                await transactions.commit(offsets)
            except Exception as error:
                # Fenced (another worker owns a partition now) or the broker refused: nothing
                # of the open transactions becomes visible; the partitions' owner reads again.
                exit_fatally(f"{self.group}: committing a transaction failed", error)
            self.tracker.committed({(tp.topic, tp.partition): o for tp, o in offsets.items()})

    async def _assigned(self, assigned: set[TopicPartition]) -> None:
        if self.transactions is not None:
            try:
                await self.transactions.assign(assigned)
            except Exception as error:
                exit_fatally(f"{self.group}: starting transactional producers failed", error)
        self._ready |= assigned
        log.info("scoring %d raw partitions (%s)", len(assigned), self.guarantee)

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go to another worker: deliver everything read, then commit."""
        async with self._handing_over:
            await self._until_delivered()
            await self._commit()
        self.tracker.forget((partition.topic, partition.partition) for partition in revoked)
        self._ready -= revoked
        if self.transactions is not None:
            await self.transactions.revoke(revoked)
