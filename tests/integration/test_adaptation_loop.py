"""The adaptation loop end to end on the real broker, while events flow: labels in, a count
trigger, the trainer's candidate through the gate, the promotion announced, and the worker
switching models between batches without dropping or doubling an event.

A ``signalyard worker`` (news only, tiny real models, embedded ClickHouse, web port for the
trainer's reads) and a ``signalyard trainer`` run as subprocesses; ``signalyard feedback
import`` plays the analysts. The target domain reads positive and negative the other way round
from the synthetic source, so the live model is mostly wrong on it and a candidate trained on
the labels is clearly better: the gate must promote it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from conftest import query
from helpers import PROCESS_WAIT_S, free_port, process_overrides, ready, wait_for_processes
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings, settings_environment
from models.registry import Registry
from models.training.retraining import split_recent
from signalyard.demo.synthetic import World, events, write_training_csv
from signalyard.local.worker_process import WorkerProcess
from streams.adaptation.feedback_import import labeled_events
from streams.connection import aiokafka_options
from streams.producer import produce
from streams.topics import project_topics, provision_topics

pytestmark = pytest.mark.kafka

FLIPPED = {"positive": "negative", "negative": "positive", "neutral": "neutral"}
LABELS = 80
ADAPTATION = {
    "event_wait_s": 20.0,
    "check_interval_s": 1.0,
    "min_new_labels": 60,
    "schedule_s": 0.0,
    "drift_threshold": 0.0,
    "min_interval_s": 3600.0,
    "mode": "head",
    "replay_ratio": 0.0,  # the target contradicts the source on purpose
    "source_tolerance": 1.0,
    "min_holdout": 15,
    "holdout_fraction": 0.25,
    "gate_margin": 0.05,
}


def flipped_labels(path: Path) -> Path:
    source = write_training_csv("news", path.with_suffix(".source.csv"), LABELS, seed=99)
    with source.open(newline="", encoding="utf-8") as handle:
        rows = [(row["text"], FLIPPED[row["label"]]) for row in csv.DictReader(handle)]
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    return path


def worker_counters(port: int) -> dict[tuple[str, str], float]:
    """The worker's adaptation counters, by name and their one label's value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, next(iter(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name in ("signalyard_model_swaps", "signalyard_feedback_labels")
        for sample in family.samples
        if sample.name.endswith("_total")
    }


class Flow:
    """Synthetic news at a steady rate, in a thread, until stopped; remembers what it sent."""

    def __init__(self, settings: Settings, rate: float) -> None:
        self.sent: list[str] = []
        self._stop = threading.Event()
        topic = settings.topics.news_raw.name
        self._thread = threading.Thread(
            target=asyncio.run, args=(produce(settings.kafka, topic, self._records(), rate),)
        )

    def _records(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in events(World(seed=5), "news"):
            if self._stop.is_set():
                return
            self.sent.append(json.loads(value)["id"])
            yield key, value

    def __enter__(self) -> Flow:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


async def scored_results(settings: Settings, wanted: set[str]) -> list[tuple[int, int, dict]]:
    """(partition, offset, result) of the news scored topic, read until ``wanted`` are in."""
    consumer = AIOKafkaConsumer(
        settings.topics.news_scored.name,
        **aiokafka_options(settings.kafka),
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    results: list[tuple[int, int, dict]] = []
    seen: set[str] = set()
    await consumer.start()
    try:
        deadline = time.monotonic() + PROCESS_WAIT_S
        while not wanted <= seen and time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    result = json.loads(record.value)
                    results.append((tp.partition, record.offset, result))
                    seen.add(result["event_id"])
    finally:
        await consumer.stop()
    return results


def test_labels_trigger_a_gated_candidate_that_workers_swap_in_while_events_flow(
    kafka: Settings, registry_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    settings = kafka.model_copy(
        update={
            "pipeline": kafka.pipeline.model_copy(update={"web_port": port}),
            "adaptation": kafka.adaptation.model_copy(update=ADAPTATION),
        }
    )
    models = tmp_path / "models"
    shutil.copytree(registry_dir, models)
    registry = Registry(models)
    asyncio.run(provision_topics(settings.kafka, project_topics(settings)))
    overrides = process_overrides(models)
    worker = WorkerProcess(settings, tmp_path / "worker.log", ("worker",), overrides)
    trainer = WorkerProcess(settings, tmp_path / "trainer.log", ("trainer",), overrides)
    labels_file = flipped_labels(tmp_path / "labels.csv")
    imported = {
        item.event_id for item in labeled_events("news", labels_file, (), datetime.now(UTC))
    }
    processes = [worker, trainer]
    try:
        worker.start("--domain", "news", "--loglevel", "info")
        trainer.start("--loglevel", "info")
        with Flow(settings, rate=10) as flow:
            wait_for_processes(lambda: ready(port), "the worker to be ready", processes)
            subprocess.run(
                [sys.executable, "-m", "signalyard", "feedback", "import", "news", "--file",
                 str(labels_file), "--labeler", "ana"],
                env=worker.env, check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            bad = [
                (b"x", b'{"event_id": "never-scored", "domain": "news", "label": "positive", '
                       b'"labeler": "ana", "ts": "2026-11-28T12:00:00Z"}'),
                (b"x", b'{"event_id": "' + sorted(imported)[0].encode() + b'", "domain": "news", '
                       b'"label": "bullish", "labeler": "ana", "ts": "2026-11-28T12:00:00Z"}'),
                (b"x", b"not json"),
            ]  # fmt: skip
            asyncio.run(produce(settings.kafka, settings.topics.feedback_labels.name, bad))
            wait_for_processes(
                lambda: registry.live_version("news") == "v2", "a promotion", processes
            )

            def swapped() -> bool:
                # The worker loads the promoted version in the background: on a busy machine
                # that takes seconds after the promotion, and events until then are v1's.
                return worker_counters(port).get(("signalyard_model_swaps_total", "news"), 0) > 0

            wait_for_processes(swapped, "the worker to swap the promoted model in", processes)
            swapped_at = len(flow.sent)
            wait_for_processes(
                lambda: len(flow.sent) > swapped_at + 50, "events after the swap", processes
            )
        results = asyncio.run(scored_results(settings, set(flow.sent) | imported))
        counters: dict[tuple[str, str], float] = {}

        def unknown_event_counted() -> bool:
            # The label of an event never scored waits event_wait_s before its dead letter.
            counters.update(worker_counters(port))
            return ("signalyard_feedback_labels_total", "unknown event") in counters

        wait_for_processes(unknown_event_counted, "the unknown event id's dead letter", processes)
        assert worker.stop() == 0, worker.tail()
        assert trainer.stop() == 0, trainer.tail()
    finally:
        for process in processes:
            process.cleanup()

    # Every event once, each partition switching from v1 to v2 once and for good.
    counts = Counter(result["event_id"] for _, _, result in results)
    assert set(flow.sent) | imported <= set(counts), worker.tail()
    assert set(counts.values()) == {1}, [i for i, n in counts.items() if n > 1][:5]
    for partition in {p for p, _, _ in results}:
        versions = [r["model_version"] for p, _, r in sorted(results, key=lambda x: x[:2])
                    if p == partition]  # fmt: skip
        assert versions == sorted(versions), f"partition {partition} went back to v1"
    assert {result["model_version"] for _, _, result in results} == {"v1", "v2"}

    assert counters[("signalyard_model_swaps_total", "news")] == 1
    assert counters[("signalyard_feedback_labels_total", "joined")] == LABELS
    assert counters[("signalyard_feedback_labels_total", "unknown event")] == 1
    assert counters[("signalyard_feedback_labels_total", "invalid feedback")] == 2

    # The gate's decision is in the registry; the trigger, labels and dead letters in the store.
    gate = registry.metadata("news", "v2")["adaptation"]
    assert gate["request"]["reason"] == "count" and gate["gate"]["promote"]
    training, holdout = split_recent(len(imported), settings.adaptation)
    assert gate["labels"] == {"train": training, "holdout": holdout}
    assert "candidate v2" in trainer.tail(20_000)
    [(reason, labels_total, live)] = query(
        settings, "SELECT reason, labels_total, live_version FROM retrain_triggers FINAL"
    )
    assert (reason, labels_total, live) == ("count", len(imported), "v1")
    rows = query(
        settings,
        "SELECT event_id, label, predicted_label, model_version, labeler, input "
        "FROM feedback FINAL WHERE domain = 'news'",
    )
    assert {row[0] for row in rows} == imported
    texts = dict(csv.reader(labels_file.open(encoding="utf-8")))
    for _, label, predicted, version, labeler, text in rows:
        assert texts[text] == label and labeler == "ana" and version == "v1"
        assert predicted in ("negative", "neutral", "positive")
    topic = settings.topics.feedback_labels.name
    dead = dict(
        query(
            settings, f"SELECT reason, payload FROM deadletter FINAL WHERE source_topic = '{topic}'"
        )
    )
    assert len(dead) == 3, dead
    reasons = " | ".join(dead)
    assert "unknown event id" in reasons and "never-scored" in reasons
    assert "unknown news label 'bullish'" in reasons
    assert "not a feedback label" in reasons


def test_promote_and_rollback_are_announced_for_running_workers(
    kafka: Settings, registry_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from signalyard.cli import main

    models = tmp_path / "models"
    shutil.copytree(registry_dir, models)
    registry = Registry(models)
    registry.register("news", registry.version_dir("news", "v1"), promote=False)
    for name, value in settings_environment(kafka).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SIGNALYARD_REGISTRY_DIR", str(models))
    asyncio.run(provision_topics(kafka.kafka, [kafka.topics.model_updates]))
    main(["models", "promote", "news", "v2"])
    main(["models", "rollback", "news"])

    async def announcements() -> list[dict]:
        consumer = AIOKafkaConsumer(
            kafka.topics.model_updates.name,
            **aiokafka_options(kafka.kafka),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        read: list[dict] = []
        try:
            deadline = time.monotonic() + 30
            while len(read) < 2 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                read += [json.loads(r.value) for records in batches.values() for r in records]
        finally:
            await consumer.stop()
        return read

    updates = asyncio.run(announcements())
    assert [(u["domain"], u["version"], u["reason"]) for u in updates] == [
        ("news", "v2", "promote"),
        ("news", "v1", "rollback"),
    ]
    assert registry.live_version("news") == "v1"
