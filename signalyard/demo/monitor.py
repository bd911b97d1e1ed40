"""A live summary of what the workers publish: read from the scored, dead-letter and adaptation
topics.

Reading Kafka, not ClickHouse, lets the summary run beside any number of workers (an embedded
ClickHouse store belongs to its worker's process). ``LiveStats`` is the pure part: rates over
a sliding window, latency percentiles over the window's results, counts by label since start,
accuracy against the true labels of the events whose truth the feeder knows, and the latest
steps of the adaptation loop (retrain requests and model swaps).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

import domains
from config.settings import DomainName, Settings
from streams.adaptation.messages import ModelUpdate, RetrainRequest
from streams.connection import consumer_options
from streams.deadletter import kind_from_headers

WINDOW_S = 10.0
ADAPTATION_LINES = 6


@dataclass(frozen=True)
class DomainSummary:
    scored: int
    per_second: float
    p50_ms: float | None
    p99_ms: float | None
    labels: dict[str, int]
    judged: int = 0  # scored events whose true label is known
    accuracy: float | None = None  # of the feedback field (label, intent, failure mode) on them


@dataclass(frozen=True)
class Summary:
    domains: dict[DomainName, DomainSummary]
    dead_letters: int
    dead_reasons: list[tuple[str, int]]
    adaptation: list[str] = field(default_factory=list)  # the latest steps, oldest first


@dataclass
class _DomainStats:
    scored: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[float, float]] = field(default_factory=deque)  # (seen at, latency ms)
    judged: int = 0
    right: int = 0


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class LiveStats:
    """``truth`` maps the ids of fed events to their true labels; a feeder adds to it as it
    sends, and each entry is dropped once its result is counted."""

    def __init__(self, window_s: float = WINDOW_S, truth: dict[str, str] | None = None) -> None:
        self.window_s = window_s
        self.started_at: float | None = None
        self.truth = truth if truth is not None else {}
        self._domains = {domain: _DomainStats() for domain in domains.names()}
        self._dead = Counter[str]()
        self._adaptation: deque[str] = deque(maxlen=ADAPTATION_LINES)

    def result(self, domain: DomainName, result: dict, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
        stats = self._domains[domain]
        stats.scored += 1
        stats.labels[str(result.get(domains.get(domain).summary_field)).lower()] += 1
        stats.recent.append((now, float(result["latency_ms"])))
        truth = self.truth.pop(str(result.get("event_id")), None)
        if truth is not None:
            stats.judged += 1
            stats.right += str(result.get(domains.get(domain).feedback_field)) == truth

    def dead_letter(self, kind: str) -> None:
        self._dead[kind] += 1

    def adaptation(self, line: str) -> None:
        """A step of the adaptation loop, as one line."""
        self._adaptation.append(line)

    def summary(self, now: float) -> Summary:
        domains: dict[DomainName, DomainSummary] = {}
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
                judged=stats.judged,
                accuracy=stats.right / stats.judged if stats.judged else None,
            )
        return Summary(
            domains, sum(self._dead.values()), self._dead.most_common(), list(self._adaptation)
        )


async def watch(
    settings: Settings,
    stats: LiveStats,
    ready: asyncio.Event,
    on_result: Callable[[DomainName, dict], Awaitable[None]] | None = None,
) -> None:
    """Feed ``stats`` from what is published from now on; sets ``ready`` once positioned.
    ``on_result`` is awaited with each scored result."""
    scored = {settings.topics.scored(domain).name: domain for domain in domains.names()}
    requests, updates = settings.topics.retrain_requests.name, settings.topics.model_updates.name
    topics = [*scored, settings.topics.deadletter.name, requests, updates]
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
                    if domain is not None:
                        result = json.loads(record.value)
                        stats.result(domain, result, now)
                        if on_result is not None:
                            await on_result(domain, result)
                    elif tp.topic == requests:
                        stats.adaptation(_request_line(record.value))
                    elif tp.topic == updates:
                        stats.adaptation(_update_line(record.value))
                    else:
                        stats.dead_letter(kind_from_headers(record.headers))
    finally:
        await consumer.stop()


def _request_line(value: bytes | None) -> str:
    try:
        request = RetrainRequest.model_validate_json(value or b"")
    except ValidationError:
        return "a malformed retrain request (the trainer dead-letters it)"
    return f"{request.domain}: retraining asked ({request.reason}: {request.detail})"


def _update_line(value: bytes | None) -> str:
    try:
        update = ModelUpdate.model_validate_json(value or b"")
    except ValidationError:
        return "a malformed model update"
    return f"{update.domain}: the workers swap to {update.version}"
