"""Pure parts of the pipeline: micro-batching, scored results, the live summary, the world."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta

import domains
from domains.base import Lineage
from domains.news import NewsEvent
from models.base import SentimentPrediction
from signalyard.demo.monitor import LiveStats, percentile
from signalyard.demo.synthetic import World, events
from streams.batching import MicroBatcher
from streams.processor import kafka_time
from streams.validation import EventLimits, Rejected, parse_event


def test_a_batch_closes_when_full_without_waiting() -> None:
    async def scenario() -> tuple[list[int], float]:
        batcher: MicroBatcher[int] = MicroBatcher(max_size=4, max_wait_s=10)
        for item in range(4):
            await batcher.put(item)
        loop = asyncio.get_running_loop()
        started = loop.time()
        batch = await batcher.next_batch()
        return batch, loop.time() - started

    batch, waited = asyncio.run(scenario())
    assert batch == [0, 1, 2, 3]
    assert waited < 0.5


def test_a_batch_closes_at_the_maximum_wait_counted_from_its_first_item() -> None:
    async def scenario() -> tuple[list[int], float]:
        batcher: MicroBatcher[int] = MicroBatcher(max_size=100, max_wait_s=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await batcher.put(1)
        await batcher.put(2)
        batch = await batcher.next_batch()
        return batch, loop.time() - started

    batch, waited = asyncio.run(scenario())
    assert batch == [1, 2]
    assert 0.18 <= waited < 1.0


def test_put_waits_while_a_full_batch_is_not_taken_and_order_is_kept() -> None:
    async def scenario() -> list[list[int]]:
        batcher: MicroBatcher[int] = MicroBatcher(max_size=3, max_wait_s=0.05)

        async def feed() -> None:
            for item in range(10):
                await batcher.put(item)
                assert len(batcher) <= 3

        feeding = asyncio.create_task(feed())
        batches = []
        while sum(map(len, batches)) < 10:
            batches.append(await batcher.next_batch())
        await feeding
        return batches

    batches = asyncio.run(scenario())
    assert list(itertools.chain(*batches)) == list(range(10))
    assert all(1 <= len(batch) <= 3 for batch in batches)


def test_put_many_splits_a_long_run_across_batches_in_order() -> None:
    async def scenario() -> list[list[int]]:
        batcher: MicroBatcher[int] = MicroBatcher(max_size=4, max_wait_s=0.05)
        feeding = asyncio.create_task(batcher.put_many(range(10)))
        batches = []
        while sum(map(len, batches)) < 10:
            batches.append(await batcher.next_batch())
        await feeding
        return batches

    batches = asyncio.run(scenario())
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_scored_result_carries_the_event_model_batch_and_latency() -> None:
    class Model:
        domain = "news"
        model_name = "news-minilm"
        version = "v3"
        model_sha256 = "5e" * 32

    event = NewsEvent.model_validate_json(
        '{"id": "n-9", "ts": "2024-05-01T10:00:00Z", "source": "ft", "tickers": ["SAP", "SIE"],'
        ' "headline": "SAP wins contract"}'
    )
    prediction = SentimentPrediction(
        label="positive", p_negative=0.1, p_neutral=0.2, p_positive=0.7, sentiment=0.6
    )
    ingested = datetime(2024, 5, 1, 10, 0, 1, tzinfo=UTC)
    result = domains.get("news").scored_result(
        event,
        prediction,
        Model(),
        17,
        ingested,
        ingested + timedelta(milliseconds=250),
        Lineage("news.raw", 2, 41, "exactly_once"),
    )
    message = json.loads(result.model_dump_json())
    assert message["event_id"] == "n-9" and message["ticker"] == "SAP"
    assert message["model_name"] == "news-minilm" and message["model_version"] == "v3"
    assert message["batch_size"] == 17 and message["latency_ms"] == 250.0
    assert message["model_sha256"] == "5e" * 32 and message["source_topic"] == "news.raw"
    assert message["source_partition"] == 2 and message["source_offset"] == 41
    assert message["processing_guarantee"] == "exactly_once"
    assert message["label"] == "positive" and message["p_positive"] == 0.7
    assert set(result.model_dump()) == set(message)


def test_the_live_summary_has_rates_percentiles_labels_and_dead_letter_kinds() -> None:
    stats = LiveStats(window_s=10)
    for n in range(100):
        stats.result("sensors", {"latency_ms": n + 1, "defect": n % 10 == 0}, now=n / 10)
    stats.result("news", {"latency_ms": 5.0, "label": "negative"}, now=9.9)
    stats.dead_letter("not JSON")
    stats.dead_letter("not JSON")
    stats.dead_letter("too large")
    summary = stats.summary(now=10.0)
    sensors = summary.domains["sensors"]
    assert sensors.scored == 100
    assert sensors.labels == {"false": 90, "true": 10}
    assert 9.0 <= sensors.per_second <= 10.5
    assert sensors.p50_ms == 50 and sensors.p99_ms == 99
    assert summary.domains["news"].labels == {"negative": 1}
    assert summary.domains["tickets"].p50_ms is None
    assert summary.dead_letters == 3
    assert summary.dead_reasons == [("not JSON", 2), ("too large", 1)]
    later = stats.summary(now=25.0)  # the window has passed: no rate, counts stay
    assert later.domains["sensors"].per_second == 0 and later.domains["sensors"].scored == 100
    assert percentile([], 0.5) is None


def test_the_synthetic_world_is_seeded_valid_and_breaks_the_requested_fraction() -> None:
    def sample(seed: int, fraction: float) -> list[tuple[bytes, bytes]]:
        return list(itertools.islice(events(World(seed=seed), "sensors", fraction), 2000))

    assert [v for _, v in sample(5, 0.0)][:50] != [v for _, v in sample(6, 0.0)][:50]
    first, again = sample(5, 0.1), sample(5, 0.1)
    assert [k for k, _ in first] == [k for k, _ in again]
    bad = 0
    for key, value in first:
        try:
            event = parse_event("sensors", value, EventLimits(65536))
        except Rejected:
            bad += 1
            continue
        assert key == event.machine_id.encode()
    assert 120 <= bad <= 280
    for domain in ("news", "tickets"):
        for _, value in itertools.islice(events(World(seed=1), domain), 300):
            parse_event(domain, value, EventLimits(65536))


def test_a_record_time_past_any_date_counts_as_arrival_now_instead_of_failing_the_batch() -> None:
    # Brokers before Kafka 4.0 take any CreateTime a producer sets, far future included.
    assert kafka_time(1_795_860_000_000) == datetime(2026, 11, 28, 10, tzinfo=UTC)
    for unknown in (-1, 0, 9_000_000_000_000_000, 2**63 - 1):
        assert abs(kafka_time(unknown) - datetime.now(UTC)) < timedelta(seconds=5)
