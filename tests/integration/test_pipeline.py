"""The scoring pipeline end to end: real broker, worker processes, real models, embedded ClickHouse.

Models are tiny ones trained once per session from the synthetic world (``registry_dir`` of
conftest.py). Every worker is a ``signalyard worker`` subprocess configured through
SIGNALYARD_* variables with this test's private home, topics and consumer group; each is killed
at the end even when the test fails. The embedded ClickHouse allows one process per data
directory, so a store is read only after its worker has exited.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest
from conftest import Worker, new_worker, query
from helpers import MALFORMED, WAIT_S, ids_of, provision, read_until, send, synthetic

import domains
from config.settings import Settings, load_settings
from models.registry import Registry
from streams.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_TOPIC
from streams.groups import wait_until_stable

pytestmark = pytest.mark.kafka


def test_every_event_scored_once_and_malformed_events_dead_lettered(
    kafka: Settings, registry_dir: Path, workers: list[Worker]
) -> None:
    settings = kafka
    provision(settings)
    batches = {domain: synthetic(domain, 40, seed=n) for n, domain in enumerate(domains.names())}
    # Bad news arrive between good news: the agent must keep scoring after each of them.
    news = batches["news"]
    mixed = news[:10] + [(b"AAPL", bad) for bad, _ in MALFORMED] + news[10:]
    asyncio.run(send(settings, "news", mixed))
    for domain in domains.names():
        if domain != "news":
            asyncio.run(send(settings, domain, batches[domain]))
    expected = {domain: ids_of(records) for domain, records in batches.items()}

    worker = new_worker(workers, settings, registry_dir, f"t-{uuid.uuid4().hex[:8]}", "w").start()
    scored = asyncio.run(
        read_until(
            settings,
            lambda s: (
                all(len(s.ids[d]) >= len(expected[d]) for d in domains.names())
                and len(s.dead) >= len(MALFORMED)
            ),
        )
    )
    assert worker.stop() == 0, worker.tail()

    registry = Registry(registry_dir)
    for domain in domains.names():
        assert set(scored.ids[domain]) == expected[domain], worker.tail()
        assert set(scored.ids[domain].values()) == {1}
        for event_id in expected[domain]:
            result = scored.results[event_id]
            assert result["model_version"] == registry.live_version(domain)
            assert result["model_name"]
            assert 1 <= result["batch_size"] <= settings.batching.of(domain).max_batch_size
            assert result["latency_ms"] >= 0
    assert {scored.results[i]["label"] for i in expected["news"]} <= {
        "negative",
        "neutral",
        "positive",
    }

    # Each dead letter is the original bytes, with its origin and reason in the headers.
    assert len(scored.dead) == len(MALFORMED)
    by_payload = {payload: headers for payload, headers in scored.dead}
    for payload, reason in MALFORMED:
        headers = by_payload[payload]
        assert reason in headers[HEADER_REASON].decode()
        assert headers[HEADER_TOPIC].decode() == settings.topics.news_raw.name
        assert int(headers[HEADER_PARTITION]) >= 0 and int(headers[HEADER_OFFSET]) >= 0

    for domain in domains.names():
        for table in (f"{domain}_events", f"{domain}_scores"):
            rows = query(settings, f"SELECT event_id, count() FROM {table} FINAL GROUP BY event_id")
            assert dict(rows) == dict.fromkeys(expected[domain], 1), table
    dead_rows = query(settings, "SELECT source_topic, reason, hex(payload) FROM deadletter FINAL")
    assert {row[0] for row in dead_rows} == {settings.topics.news_raw.name}
    stored = {row[2]: row[1] for row in dead_rows}
    assert len(stored) == len(MALFORMED)
    for payload, reason in MALFORMED:
        assert reason in stored[payload.hex().upper()]


def test_worker_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    kafka: Settings, registry_dir: Path, workers: list[Worker]
) -> None:
    settings = kafka
    provision(settings)
    records = synthetic("sensors", 8000, seed=21)
    expected = ids_of(records)
    app_id = f"t-{uuid.uuid4().hex[:8]}"

    async def feed_and_kill() -> tuple[int, int, bool]:
        first = new_worker(workers, settings, registry_dir, app_id, "first").start("sensors")
        # Twenty seconds of sending (a loaded machine took over ten to read 1,000 results):
        # the reader may lag the worker, which scores as fast as the events come, so only
        # events still unsent at the kill are sure to be left to the second worker.
        feeding = asyncio.create_task(send(settings, "sensors", records, rate=400))
        progress = await read_until(
            settings, lambda s: len(s.ids["sensors"]) >= 1000, names=("sensors",)
        )
        sending = not feeding.done()
        status = first.kill()
        await feeding
        return len(progress.ids["sensors"]), status, sending

    scored_before_kill, status, sending = asyncio.run(feed_and_kill())
    assert status == -signal.SIGKILL
    assert 1000 <= scored_before_kill < len(expected), "the kill must come mid-stream"
    assert sending, "the kill must come while events are still being sent"

    second = new_worker(workers, settings, registry_dir, app_id, "second").start("sensors")
    scored = asyncio.run(
        read_until(settings, lambda s: len(s.ids["sensors"]) >= len(expected), ("sensors",))
    )
    assert second.stop() == 0, second.tail()
    # At least once on the topic (a replayed batch may be published twice) ...
    assert set(scored.ids["sensors"]) == expected, second.tail()
    # ... and exactly once in ClickHouse.
    for table in ("sensors_events", "sensors_scores"):
        rows = query(settings, f"SELECT event_id, count() FROM {table} FINAL GROUP BY event_id")
        assert dict(rows) == dict.fromkeys(expected, 1), table


def test_two_workers_split_the_partitions_and_score_every_event_once(
    kafka: Settings, registry_dir: Path, workers: list[Worker], tmp_path: Path
) -> None:
    """Embedded ClickHouse: each worker has its own home and store (one process per data
    directory); with a ClickHouse server both would write one store."""
    settings = kafka
    provision(settings)
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    homes = [
        load_settings(home=tmp_path / name, topics=settings.topics.model_dump())
        for name in ("one", "two")
    ]
    pair = [
        new_worker(workers, home, registry_dir, app_id, name)
        for home, name in zip(homes, ("one", "two"), strict=True)
    ]
    for worker in pair:
        # Workers as deployed, alerting included: its state is restored on every rebalance.
        worker.env["SIGNALYARD_ALERTS__IN_SCORING_WORKERS"] = "true"
        worker.start("sensors")
    pipeline = settings.pipeline.model_copy(update={"app_id": app_id})
    # The raw topics', alerting's, and the Faust app's (up last: a stop must not come mid
    # start-up, which Faust may not survive).
    for group in (pipeline.scoring_group, f"{app_id}-alerts", app_id):
        assert asyncio.run(wait_until_stable(settings.kafka, group, members=2, timeout_s=WAIT_S))

    records = synthetic("sensors", 3000, seed=33)
    expected = ids_of(records)
    asyncio.run(send(settings, "sensors", records))
    scored = asyncio.run(
        read_until(settings, lambda s: len(s.ids["sensors"]) >= len(expected), ("sensors",))
    )
    for worker in pair:
        assert worker.stop() == 0, worker.tail()

    assert set(scored.ids["sensors"]) == expected
    assert set(scored.ids["sensors"].values()) == {1}
    shares = [
        {row[0] for row in query(home, "SELECT event_id FROM sensors_scores FINAL")}
        for home in homes
    ]
    assert all(len(share) >= len(expected) // 10 for share in shares), [len(s) for s in shares]
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == expected


def test_a_worker_without_a_live_model_stops_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from signalyard.cli import main

    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path))
    monkeypatch.delenv("SIGNALYARD_REGISTRY_DIR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--domain", "sensors"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith("signalyard: error: no live sensors model in ")
