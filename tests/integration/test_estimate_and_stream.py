"""The label-free estimate and the unlabeled stream, on the real broker with tiny real models.

A ``signalyard worker`` (news only, embedded ClickHouse, web port) scores events; the checks:

* the estimated-accuracy gauge (mean calibrated confidence) sits near the model's validation
  accuracy on in-domain news and falls when the stream shifts to text the model never saw,
  and the leader's trigger records the fall as a retrain request of reason ``estimate``;
* for a student with a teacher, the trainer reads the events nobody labeled from the store,
  and its round registers an adapted teacher and a student taught on those events, with
  the threshold and per-class cap respected and counted in the student's metadata.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import shutil
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import query
from helpers import (
    NEWS_WORDS,
    TARGET,
    free_port,
    process_overrides,
    ready,
    wait_for_processes,
    write_csv,
)
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from models.registry import Registry
from signalyard.demo.synthetic import World, events
from signalyard.local.worker_process import WorkerProcess
from store.readonly import query_store
from streams.adaptation.messages import RetrainRequest
from streams.adaptation.trainer import Trainer
from streams.producer import produce
from streams.topics import project_topics, provision_topics

pytestmark = pytest.mark.kafka

WINDOW = 40
LOREM = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]


def gauges(port: int) -> dict[str, float]:
    """The news samples of the three accuracy gauges, by gauge name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name.endswith("_accuracy")
        for sample in family.samples
        if sample.labels.get("domain") == "news"
    }


def live_query(settings: Settings, sql: str) -> list[list]:
    """Rows of a query on the store the running worker holds, through its SQL endpoint."""
    return query_store(settings, sql).rows


def scored(settings: Settings) -> int:
    return int(live_query(settings, "SELECT count() FROM news_scores FINAL")[0][0])


def news(headlines: list[str], prefix: str) -> list[tuple[bytes, bytes]]:
    """Synthetic news events with these headlines and no body (ids ``<prefix>-<n>``)."""
    records = []
    for n, ((key, value), headline) in enumerate(
        zip(events(World(seed=5), "news"), headlines, strict=False)
    ):
        event = {**json.loads(value), "id": f"{prefix}-{n}", "headline": headline}
        event.pop("body", None)
        event["ts"] = datetime.now(UTC).isoformat()
        records.append((key, json.dumps(event).encode()))
    return records


def worker_settings(kafka: Settings, port: int, **adaptation: object) -> Settings:
    return kafka.model_copy(
        update={
            "pipeline": kafka.pipeline.model_copy(update={"web_port": port}),
            "adaptation": kafka.adaptation.model_copy(update=adaptation),
        }
    )


def start_worker(settings: Settings, models: Path, log: Path) -> WorkerProcess:
    asyncio.run(provision_topics(settings.kafka, project_topics(settings)))
    worker = WorkerProcess(settings, log, ("worker",), process_overrides(models))
    return worker.start("--domain", "news", "--loglevel", "info")


def test_the_estimate_falls_when_the_stream_shifts_and_fires_its_trigger(
    kafka: Settings, registry_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    settings = worker_settings(
        kafka, port, check_interval_s=1.0, min_new_labels=0, schedule_s=0.0,
        drift_threshold=0.0, min_interval_s=3600.0, estimate_window=WINDOW, estimate_margin=0.1,
    )  # fmt: skip
    models = tmp_path / "models"
    shutil.copytree(registry_dir, models)
    validation = Registry(models).metadata("news", "v1")["calibration"]["accuracy"]
    worker = start_worker(settings, models, tmp_path / "worker.log")
    topic = settings.topics.news_raw.name
    try:
        wait_for_processes(lambda: ready(port), "the worker to be ready", [worker])
        in_domain = [json.loads(v)["headline"] for _, v in
                     itertools.islice(events(World(seed=8), "news"), WINDOW)]  # fmt: skip
        asyncio.run(produce(settings.kafka, topic, news(in_domain, "in")))
        wait_for_processes(lambda: scored(settings) == WINDOW, "the in-domain news", [worker])
        before = gauges(port)
        rng = random.Random(3)
        shifted = [" ".join(rng.choice(LOREM) for _ in range(8)) for _ in range(WINDOW)]
        asyncio.run(produce(settings.kafka, topic, news(shifted, "out")))
        wait_for_processes(lambda: scored(settings) == 2 * WINDOW, "the shifted news", [worker])
        after = gauges(port)

        wait_for_processes(
            lambda: bool(live_query(settings, "SELECT 1 FROM retrain_triggers FINAL")),
            "the estimate trigger",
            [worker],
        )
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()

    assert before["signalyard_validation_accuracy"] == pytest.approx(validation)
    assert before["signalyard_estimated_accuracy"] > validation - 0.1, before
    assert after["signalyard_estimated_accuracy"] < before["signalyard_estimated_accuracy"] - 0.2
    [(reason, detail)] = query(settings, "SELECT reason, detail FROM retrain_triggers FINAL")
    assert reason == "estimate" and f"against {validation:.3f}" in detail, detail
    # Every stored result carries the confidence the gauge and the trigger averaged.
    [(low, high)] = query(settings, "SELECT min(confidence), max(confidence) FROM news_scores")
    assert 1 / 3 <= low <= high <= 1


def test_the_trainer_teaches_the_student_from_the_events_nobody_labeled(
    kafka: Settings, student_home: Registry, tmp_path: Path
) -> None:
    port = free_port()
    settings = worker_settings(
        kafka, port, mode="full", min_holdout=5, gate_margin=0.0, source_tolerance=1.0,
        min_new_labels=0, drift_threshold=0.0, schedule_s=0.0, unlabeled_events=20,
        unlabeled_threshold=0.5, unlabeled_class_cap=3,
    )  # fmt: skip
    settings = settings.model_copy(update={"registry_dir": student_home.root})
    labels_file = tmp_path / "labels.csv"
    labeled = [[f"{text} #{k}", label] for k in range(2) for text, label in TARGET]
    write_csv(labels_file, ["text", "label"], labeled)
    worker = start_worker(settings, student_home.root, tmp_path / "worker.log")
    unlabeled = [f"${t} {p} {i}" for i, t in enumerate(["EFX", "GLOB", "HALO"])
                 for ps in NEWS_WORDS.values() for p in ps]  # fmt: skip
    try:
        wait_for_processes(lambda: ready(port), "the worker to be ready", [worker])
        asyncio.run(produce(settings.kafka, settings.topics.news_raw.name, news(unlabeled, "u")))
        subprocess.run(
            [sys.executable, "-m", "signalyard", "feedback", "import", "news", "--file",
             str(labels_file), "--labeler", "ana"],
            env=worker.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

        def labels_joined() -> bool:
            joined = live_query(settings, "SELECT count() FROM feedback FINAL")[0][0]
            return int(joined) == len(labeled)

        wait_for_processes(labels_joined, "the labels joined to their events", [worker])
        trainer = Trainer(settings)
        read = trainer._unlabeled("news", 100)
        request = RetrainRequest(
            request_id="r1", domain="news", reason="manual", detail="test",
            live_version="v2", requested_at=datetime.now(UTC),
        )  # fmt: skip
        outcome = asyncio.run(trainer.train(request))
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.cleanup()

    # The store's unlabeled events, and none of the labeled ones (their texts are distinct).
    assert sorted(read) == sorted(unlabeled)
    assert outcome.teacher_version == "v3" and outcome.version == "v4", outcome
    assert student_home.metadata("news", "v3")["role"] == "teacher"
    stream = student_home.metadata("news", "v4")["distillation"]["transfer"]["stream"]
    # 27 unlabeled events in the store; the trainer asks for the 20 most recent.
    assert stream["events_requested"] == 20 and stream["events_read"] == 20
    assert stream["threshold"] == 0.5 and stream["class_cap"] == 3
    assert 0 < stream["kept"] == sum(stream["label_counts"].values()) <= 9
    assert all(n <= 3 for n in stream["label_counts"].values())
    assert stream["mean_confidence_kept"] >= 0.5
