"""A consumer group member that handles each fetch whole, then commits: the base of the
alert and feedback consumers.

Each fetch (up to ``max_records`` records, by partition, in offset order) goes to ``handle``,
which returns once everything the records caused is written; only then are the partitions'
positions committed. A crash before the commit reads the fetch again, so ``handle`` must be
idempotent, as the alert engine and the ClickHouse tables are. Reads are ``read_committed``:
records of aborted transactions are never seen, and the committed position moves past
transaction markers, so an idle group's lag is 0.

A fetch that cannot be decoded (``streams.undecodable``) is handled up to the undecodable
record batch, whose offsets become one dead letter (``undecodable``); the partition goes on
after it.

A stop waits for the fetch being handled, except where ``handle`` is only waiting for
something (the feedback join waits for its labels' events to be stored) and has written
nothing: seeing ``stopping`` set, it raises ``Interrupted``, and the fetch is left uncommitted
for the group to read again.

Before partitions go to another member the fetch being handled is finished and committed
(``revoked`` runs after that); ``assigned`` runs before any record of a new partition is
handled: the partitions are paused meanwhile, and a record fetched before the pause is read
again afterwards (the alert consumer restores its state there).

Why not a Faust agent: Faust's commit can stop behind a gap after a restart and never
advance (faust-streaming issues 502, 318 and 221), and its consumer reads uncommitted records
unless the whole app is transactional.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from mode import Service

from config.settings import KafkaSettings, ProcessingGuarantee
from streams.connection import group_member_options
from streams.deadletter import DeadLetter
from streams.shared import exit_fatally, exit_on_failure
from streams.transactions import PartitionTransactions
from streams.undecodable import DECODE_ERRORS, dead_letter, locate

log = logging.getLogger(__name__)

Fetched = Mapping[TopicPartition, Sequence[ConsumerRecord[bytes, bytes]]]


class Interrupted(Exception):
    """Raised by a ``handle`` that stopped because the consumer is stopping, having written
    nothing of its fetch: the fetch is not committed, and the group reads it again."""


class GroupConsumer(Service):
    """Reads ``topics`` in ``group``; subclasses implement ``handle`` (and the hooks)."""

    max_records = 500

    def __init__(
        self,
        kafka: KafkaSettings,
        group: str,
        topics: Iterable[str],
        session_timeout_s: float,
        max_handle_s: float = 60.0,
        guarantee: ProcessingGuarantee = "at_least_once",
        **kwargs: Any,
    ) -> None:
        """``max_handle_s``: how long one ``handle`` may take; a rebalance waits that long
        for the fetch in hand before the group gives this member up. ``guarantee``:
        under ``exactly_once`` each partition's part of a fetch is handled in that partition's
        transaction (``streams.transactions``), which commits its offset too."""
        super().__init__(**kwargs)
        self.kafka = kafka
        self.group = group
        self.topics = sorted(topics)
        self.session_timeout_s = session_timeout_s
        self.max_handle_s = max_handle_s
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._handling = asyncio.Lock()
        self._handled: dict[TopicPartition, int] = {}  # the next offset after handled records
        self._committed: dict[TopicPartition, int] = {}
        self._ready: set[TopicPartition] = set()  # assigned, and ``assigned`` has run
        self.stopping = asyncio.Event()  # set when a stop begins; see ``Interrupted``
        self.transactions = (
            PartitionTransactions(kafka, group) if guarantee == "exactly_once" else None
        )

    async def handle(self, fetched: Fetched) -> None:
        """Process one fetch; return once its effects are written. Under ``exactly_once`` a
        fetch holds one partition, and ``SharedProducer`` sends in its transaction. May raise
        ``Interrupted``, having written nothing, once ``stopping`` is set."""
        raise NotImplementedError

    async def undecodable(self, letter: DeadLetter) -> None:
        """Publish and store the dead letter of a range of records that cannot be decoded;
        under ``exactly_once`` in its partition's transaction, as ``handle``'s outputs."""
        raise NotImplementedError

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """Called before records of newly assigned ``partitions`` are handled."""

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Called after the last records of ``partitions`` are handled and committed."""

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def highwater(self, partition: TopicPartition) -> int | None:
        """The partition's end offset as of the last fetch, if it was fetched from yet."""
        return self._consumer.highwater(partition) if self._consumer is not None else None

    def committed_offset(self, partition: TopicPartition) -> int | None:
        return self._committed.get(partition)

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            **group_member_options(
                self.kafka,
                self.group,
                self.session_timeout_s,
                self.session_timeout_s + self.max_handle_s,
            )
        )
        self._consumer.subscribe(self.topics, listener=Rebalance(self._hand_over, self._take_over))
        await self._consumer.start()
        self._reader = asyncio.create_task(self._read_until_cancelled(), name=self.group)
        self._reader.add_done_callback(exit_on_failure)

    async def on_stop(self) -> None:
        self.stopping.set()
        if self._reader is not None:
            # Never mid-handle: the fetch being handled is finished first. Records fetched and
            # not handled yet are not committed, so the group reads them again.
            async with self._handling:
                self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            async with self._handling:
                await self.commit()
            await self._consumer.stop()
        if self.transactions is not None:
            await self.transactions.stop()

    async def _read_until_cancelled(self) -> None:
        while True:
            try:
                await self._read_one_fetch()
            except Interrupted as interrupted:
                log.info("%s: stopping; a fetch is left to read again: %s", self.group,
                         interrupted)  # fmt: skip
                return

    async def _read_one_fetch(self) -> None:
        assert self._consumer is not None
        try:
            fetched = await self._consumer.getmany(timeout_ms=500, max_records=self.max_records)
        except DECODE_ERRORS as error:
            await self._step_past(error)
            return
        async with self._handling:
            owned = self._consumer.assignment()
            mine = {}
            for tp, records in fetched.items():
                if tp not in owned:  # revoked while the fetch was on its way: not ours
                    continue
                if tp not in self._ready:  # fetched before its take-over: read it again
                    self._consumer.seek(tp, records[0].offset)
                    continue
                mine[tp] = records
            if mine and self.transactions is None:
                await self.handle(mine)
            for tp, records in mine.items() if self.transactions is not None else ():
                with self.transactions.scope(tp):
                    await self.handle({tp: records})
                # Its transaction holds the partition's outputs: should a later partition's
                # handle be interrupted, the stop's commit carries this offset with them.
                self._handled[tp] = records[-1].offset + 1
            # Every record returned is handled: the positions (past transaction markers and
            # aborted records too) are safe to commit.
            for tp in owned & self._ready:
                try:
                    self._handled[tp] = await self._consumer.position(tp)
                except KafkaError:  # unassigned meanwhile: its new owner commits it
                    continue
            await self.commit()

    async def _step_past(self, error: Exception) -> None:
        """Handle the records before an undecodable batch, dead-letter its range, seek past."""
        assert self._consumer is not None
        async with self._handling:
            owned = self._consumer.assignment() & self._ready
            for located in await locate(self.kafka, self._consumer, owned, error):
                bad, letter = located.undecodable, dead_letter(located.undecodable)
                log.error("%s: %s of %s[%d]", self.group, letter.reason, *bad.partition)
                with self.transactions.scope(bad.partition) if self.transactions else nullcontext():
                    if located.readable:
                        await self.handle({bad.partition: located.readable})
                    await self.undecodable(letter)
                self._consumer.seek(bad.partition, bad.last + 1)
                self._handled[bad.partition] = bad.last + 1
            await self.commit()

    async def commit(self) -> None:
        """Commit how far each owned partition is handled, where that moved; call it holding
        ``_handling``."""
        assert self._consumer is not None
        owned = self._consumer.assignment()
        offsets = {
            tp: offset
            for tp, offset in self._handled.items()
            if tp in owned and self._committed.get(tp) != offset
        }
        if self.transactions is not None:
            try:
                await self.transactions.commit(offsets)
            except Exception as error:
                # Fenced, or the broker refused: none of it is visible; the owner reads again.
                exit_fatally(f"{self.group}: committing a transaction failed", error)
            self._committed.update(offsets)
            return
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as error:
            # Rebalancing: the hand-over commits before partitions move.
            log.warning("%s: commit deferred: %s", self.group, error)
            return
        self._committed.update(offsets)

    async def _hand_over(self, revoked: set[TopicPartition]) -> None:
        async with self._handling:
            await self.commit()
        self._ready -= revoked
        for tp in revoked:
            self._committed.pop(tp, None)
            self._handled.pop(tp, None)
        await self.revoked(revoked)
        if self.transactions is not None:
            await self.transactions.revoke(revoked)

    async def _take_over(self, assigned: set[TopicPartition]) -> None:
        assert self._consumer is not None
        self._consumer.pause(*assigned)
        try:
            if self.transactions is not None:
                # First: fencing aborts the previous owner's open transaction, so what
                # ``assigned`` restores (read committed) is final.
                await self.transactions.assign(assigned)
            await self.assigned(assigned)
        except Exception as error:
            # aiokafka only logs a listener's error: the partitions would stay unready, read
            # again and again and never handled. A restart takes them over afresh.
            exit_fatally(f"{self.group}: taking over {len(assigned)} partitions failed", error)
        self._ready |= assigned
        self._consumer.resume(*assigned)


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands a rebalance's two moments to coroutines (aiokafka awaits each)."""

    def __init__(
        self,
        revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        assigned: Callable[[set[TopicPartition]], Awaitable[None]],
    ) -> None:
        self.revoked = revoked
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.assigned(assigned)
