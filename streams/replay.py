"""Reading a time range of a topic again, without touching any consumer group.

A range ``[T1, T2)`` of Kafka record timestamps becomes, on every partition, the offsets from
the first record at or after T1 to the first record at or after T2 (the broker's offset-for-time
lookup), or to the partition's end at the time the reading started when no record is that late.
The reader has no group: it commits nothing, joins nothing and takes no partition from a live
worker. Partitions are read one after the other, each in offset order, so a range is always
read in the same order.

A producer may set record timestamps out of order, so within those offsets each record's own
timestamp is checked as well: one outside the range is skipped (and counted). A record with a
timestamp inside the range that was written after the first record at or after T2 lies beyond
the last offset and is not read; topics with broker-assigned timestamps (LogAppendTime) have
no such records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from config.settings import KafkaSettings
from streams.connection import aiokafka_options, consumer_options
from streams.processor import LAST_MS, SourceRecord
from streams.topics import partition_count

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FETCH_MAX_RECORDS = 1000


class UnknownTopicError(Exception):
    """The topic to replay does not exist."""


def parse_time(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 time (``2026-11-28T10:00:00Z``; UTC when it has no
    zone), a date (``2026-11-28``, midnight UTC) or epoch milliseconds (``1795860000000``).
    Raises ValueError for anything else, epoch milliseconds after 9999-12-31 included."""
    text = text.strip()
    if text.isdigit():
        if int(text) > LAST_MS:
            raise ValueError(f"{text} ms is after 9999-12-31, the last date a time can name")
        return int(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 time (2026-11-28T10:00:00Z), a date or epoch ms"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(milliseconds=1)


def format_time(ms: int) -> str:
    """``2026-11-28T10:00:00Z``, with milliseconds only when there are some."""
    value = EPOCH + timedelta(milliseconds=ms)
    spec = "milliseconds" if ms % 1000 else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeRange:
    """Kafka record timestamps from ``start_ms`` (included) to ``end_ms`` (excluded)."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.start_ms >= self.end_ms:
            start, end = format_time(self.start_ms), format_time(self.end_ms)
            raise ValueError(f"empty range: {start} is not before {end}")

    def __contains__(self, timestamp_ms: int) -> bool:
        return self.start_ms <= timestamp_ms < self.end_ms

    @property
    def start(self) -> datetime:
        return EPOCH + timedelta(milliseconds=self.start_ms)

    @property
    def end(self) -> datetime:
        return EPOCH + timedelta(milliseconds=self.end_ms)

    @classmethod
    def parse(cls, start: str, end: str) -> TimeRange:
        return cls(parse_time(start), parse_time(end))


@dataclass(frozen=True)
class Span:
    """The offsets ``[start, stop)`` of one partition that hold the range."""

    partition: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def spans(
    first: Mapping[int, int | None], after: Mapping[int, int | None], log_end: Mapping[int, int]
) -> list[Span]:
    """Per partition, by partition number: from the first offset at or after T1 to the first at
    or after T2 (None: no record that late, so the partition's end when reading started)."""
    found = []
    for partition in sorted(log_end):
        end = log_end[partition]
        stop = min(end, _or(after[partition], end))
        start = min(stop, _or(first[partition], end))
        found.append(Span(partition, start, stop))
    return found


def _or(offset: int | None, default: int) -> int:
    return default if offset is None else offset


@dataclass(frozen=True)
class Fetched:
    """What one fetch brought: the records in the range, and how far the offsets moved."""

    records: list[SourceRecord]
    consumed: int  # offsets passed, in range or not; they add up to the spans' total size
    skipped: int  # records passed whose own timestamp is outside the range


class RangeReader:
    """The records of one topic's time range, partition by partition, in offset order.

    ``async with RangeReader(...) as reader``: ``reader.spans`` says what will be read (their
    total size is what a progress bar needs), ``reader.fetch()`` reads it.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, time_range: TimeRange) -> None:
        self.topic = topic
        self.time_range = time_range
        self.spans: list[Span] = []
        self._options = aiokafka_options(kafka)
        # No group and no commits: replaying must not move or join any consumer group.
        # Committed records only: an aborted transaction's records never happened.
        self._consumer = AIOKafkaConsumer(
            **consumer_options(kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # the range's start may have expired meanwhile
        )

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        try:
            self.spans = await self._find_spans()
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    @property
    def total(self) -> int:
        return sum(span.size for span in self.spans)

    async def _find_spans(self) -> list[Span]:
        admin = AIOKafkaAdminClient(**self._options)
        await admin.start()
        try:
            partitions = await partition_count(admin, self.topic)
        finally:
            await admin.close()
        if partitions is None:
            raise UnknownTopicError(f"topic {self.topic} does not exist")
        tps = [TopicPartition(self.topic, p) for p in range(partitions)]
        log_end = await self._consumer.end_offsets(tps)
        first = await self._consumer.offsets_for_times(dict.fromkeys(tps, self.time_range.start_ms))
        after = await self._consumer.offsets_for_times(dict.fromkeys(tps, self.time_range.end_ms))
        return spans(
            {tp.partition: None if at is None else at.offset for tp, at in first.items()},
            {tp.partition: None if at is None else at.offset for tp, at in after.items()},
            {tp.partition: offset for tp, offset in log_end.items()},
        )

    async def fetch(self) -> AsyncIterator[Fetched]:
        for span in self.spans:
            if span.size == 0:
                continue
            tp = TopicPartition(self.topic, span.partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, span.start)
            position = span.start
            while position < span.stop:
                batches = await self._consumer.getmany(
                    tp, timeout_ms=1000, max_records=FETCH_MAX_RECORDS
                )
                in_range = [r for r in batches.get(tp, []) if r.offset < span.stop]
                # Offsets can have gaps (compaction, transaction markers): go by the position.
                now = min(await self._consumer.position(tp), span.stop)
                records = [r for r in in_range if r.timestamp in self.time_range]
                yield Fetched(records, now - position, len(in_range) - len(records))
                position = now
