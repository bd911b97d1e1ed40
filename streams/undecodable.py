"""Record batches that cannot be decoded, and how a consumer steps past them.

A record batch whose checksum does not match its bytes (damaged on a broker's disk, or by a
faulty client) or whose codec is unknown makes aiokafka's ``getmany`` raise each time the
partition is fetched. Its position does not move, and the good records fetched with the bad
batch are not returned either, so without help the partition would stop for good, and every
restart with it. The error says neither which offsets are affected nor, always, which
partition.

``locate`` finds out with a consumer of its own, without a group, that fetches one record
batch at a time: from each partition's position it reads on until a batch fails (those
records before it are handed back, to be handled as usual). The bad batch starts there and
ends just before the first offset from which a fetch succeeds, found by doubling steps, then
bisection: a few fetches. The consumer dead-letters the range with the reason
(``dead_letter``) and seeks past it.

Should two undecodable batches lie a few records apart, the search may take the good
records between them into the range: they are dead-lettered with the rest, never dropped
silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError

from config.settings import KafkaSettings
from streams.connection import consumer_options
from streams.deadletter import DeadLetter

# What a fetch raises for records it cannot decode (as opposed to a broker or network fault).
DECODE_ERRORS = (CorruptRecordException, UnsupportedCodecError)
KIND = "undecodable batch"
PROBE_TIMEOUT_S = 60.0
# How far a consumer's fetch reaches into a partition: aiokafka's max_partition_fetch_bytes.
FETCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class UndecodableRange:
    """Offsets ``first`` to ``last`` (inclusive) of ``partition`` cannot be decoded."""

    partition: TopicPartition
    first: int
    last: int
    reason: str


def dead_letter(bad: UndecodableRange) -> DeadLetter:
    """The dead letter of a range: its first offset, the reason with the whole range, and no
    bytes (there are none to keep that a client could read)."""
    return DeadLetter(
        source_topic=bad.partition.topic,
        partition=bad.partition.partition,
        offset=bad.first,
        kind=KIND,
        reason=(
            f"offsets {bad.first} to {bad.last} cannot be decoded ({bad.reason}); "
            f"the partition went on from offset {bad.last + 1}"
        ),
        key=None,
        payload=b"",
        ts=datetime.now(UTC),
    )


@dataclass(frozen=True)
class Located:
    """A partition's records from the consumer's position up to a batch that cannot be
    decoded (``readable``: handle them as usual, before the range), and the range."""

    readable: list[ConsumerRecord[bytes, bytes]]
    undecodable: UndecodableRange


async def locate(
    kafka: KafkaSettings,
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    error: Exception,
) -> list[Located]:
    """Of ``partitions``, those where ``consumer`` (whose fetch raised ``error``) would meet a
    record batch that cannot be decoded within one fetch of its position: where it is, and
    the records before it. Raises ``error`` again when no partition has one (the fault was not
    in the records), and TimeoutError when the broker does not answer."""
    positions = {partition: await consumer.position(partition) for partition in partitions}
    # One record batch per fetch: the broker returns at least one whole batch, whatever the
    # limit, so each fetch decodes, or fails on, exactly the batch holding its offset.
    side = AIOKafkaConsumer(
        **consumer_options(kafka),
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=1,
    )
    await side.start()
    try:
        side.assign(list(positions))
        ends = await side.end_offsets(list(positions))
        found = [
            located
            for partition, position in sorted(positions.items())
            if (located := await _scan(side, partition, position, ends[partition], error))
        ]
        if not found:
            raise error
        return found
    finally:
        await side.stop()


async def _scan(
    side: AIOKafkaConsumer, partition: TopicPartition, position: int, end: int, error: Exception
) -> Located | None:
    """Read on from ``position`` as far as the failed consumer's fetch reached (its size
    limit) until a batch fails; None when none does."""
    side.seek(partition, position)
    readable: list[ConsumerRecord[bytes, bytes]] = []
    size = 0
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        while size <= FETCH_BYTES and await side.position(partition) < end:
            try:
                fetched = await side.getmany(partition, timeout_ms=500)
            except DECODE_ERRORS:
                first = await side.position(partition)
                last = await _first_good(side, partition, first, end) - 1
                return Located(readable, UndecodableRange(partition, first, last, str(error)))
            records = fetched.get(partition, [])
            readable += records
            size += sum(len(r.value or b"") + len(r.key or b"") for r in records)
    return None


async def _first_good(side: AIOKafkaConsumer, partition: TopicPartition, bad: int, end: int) -> int:
    """The first offset after ``bad`` from which a fetch succeeds (``end`` when none does)."""
    step, good = 1, end
    while bad + step < end:
        if not await _fails_at(side, partition, bad + step, end):
            good = bad + step
            break
        bad, step = bad + step, step * 2
    while good - bad > 1:
        middle = (bad + good) // 2
        if await _fails_at(side, partition, middle, end):
            bad = middle
        else:
            good = middle
    return good


async def _fails_at(
    side: AIOKafkaConsumer, partition: TopicPartition, offset: int, end: int
) -> bool:
    """Whether fetching the partition from ``offset`` fails to decode."""
    side.seek(partition, offset)
    async with asyncio.timeout(PROBE_TIMEOUT_S):
        while True:
            try:
                fetched = await side.getmany(partition, timeout_ms=500)
            except DECODE_ERRORS:
                return True
            # Records, or the end reached past markers and aborted records: it decodes.
            if fetched.get(partition) or await side.position(partition) >= end:
                return False
