"""A live summary of what the workers publish: read from the scored and dead-letter topics.

Reading Kafka, not ClickHouse, lets the summary run beside any number of workers (an embedded
ClickHouse store belongs to its worker's process). ``LiveStats`` is the pure part: rates over
a sliding window, latency percentiles over the window's results, counts by label since start.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer

from signalyard.settings import DOMAINS, Domain, Settings
from streams.connection import consumer_options
from streams.deadletter import kind_from_headers
from streams.schemas import LABEL_FIELDS

WINDOW_S = 10.0


@dataclass(frozen=True)
class DomainSummary:
    scored: int
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    labels: dict[str, int]


@dataclass(frozen=True)
class Summary:
    domains: dict[Domain, DomainSummary]
    dead_letters: int
    dead_reasons: list[tuple[str, int]]


@dataclass
class _DomainStats:
    scored: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # (seen at, latency ms)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class LiveStats:
    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.started_at: float | None = None
        self._domains = {domain: _DomainStats() for domain in DOMAINS}
        self._dead = Counter[str]()

    def result(self, domain: Domain, result: dict, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        stats = self._domains[domain]
        stats.scored += 1
        stats.labels[str(result.get(LABEL_FIELDS[domain])).lower()] += 1
        stats.recent.append((now, float(result["latency_ms"])))

    def dead_letter(self, kind: str) -> None:
        self._dead[kind] += 1

    def summary(self, now: float) -> Summary:
        domains: dict[Domain, DomainSummary] = {}
        for domain, stats in self._domains.items():
            while stats.recent and stats.recent[0][0] < now - self.window_s:
                stats.recent.popleft()
            latencies = [latency for _, latency in stats.recent]
            started = self.started_at
            span = min(self.window_s, now - started) if started is not None else 0.0
            domains[domain] = DomainSummary(
                scored=stats.scored,
                per_second=len(latencies) / span if span > 0 else 0.0,
                p50_ms=percentile(latencies, 0.50),
                p99_ms=percentile(latencies, 0.99),
                labels=dict(stats.labels.most_common()),
            )
        return Summary(domains, sum(self._dead.values()), self._dead.most_common())


async def watch(settings: Settings, stats: LiveStats, ready: asyncio.Event) -> None:
    """Feed ``stats`` from what is published from now on; sets ``ready`` once positioned."""
    scored = {settings.topics.scored(domain).name: domain for domain in DOMAINS}
    topics = [*scored, settings.topics.deadletter.name]
    consumer = AIOKafkaConsumer(
        *topics,
        **consumer_options(settings.kafka),
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        # Without a group the consumer takes every partition once it has the topics' metadata.
        while len({tp.topic for tp in consumer.assignment()}) < len(topics):
            await asyncio.sleep(0.1)
        await consumer.seek_to_end()
        ready.set()
        loop = asyncio.get_running_loop()
        while True:
            fetched = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = loop.time()
            for tp, records in fetched.items():
                domain = scored.get(tp.topic)
                for record in records:
                    if domain is None:
                        stats.dead_letter(kind_from_headers(record.headers))
                    else:
                        stats.result(domain, json.loads(record.value), now)
    finally:
        await consumer.stop()
