"""``signalyard demo --data``: held-out rows of labeled sets streamed as live events.

The data folder is tiny and written from the synthetic world in the layout of ../shared/data
(fpb, banking77 with its taxonomy, ai4i), so the demo trains its quick models in seconds. The
demo runs as a user runs it, a process of its own, on the real broker.
"""

from __future__ import annotations

import asyncio
import csv
import os
import random
import re
import subprocess
import sys
import uuid
from itertools import islice
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from config.settings import Settings, settings_environment
from domains.tickets import INTENTS
from models.errors import DataError
from signalyard.demo.feed import STREAM_FRACTION, data_feed, prepare
from signalyard.demo.synthetic import write_taxonomy, write_training_csv
from streams.adaptation.messages import FeedbackLabel
from streams.connection import aiokafka_options


def data_folder(root: Path, rows: int = 150) -> Path:
    write_training_csv("news", root / "fpb" / "train.csv", rows, seed=5)
    write_training_csv("tickets", root / "banking77" / "train.csv", rows, seed=5)
    write_taxonomy("tickets", root / "banking77" / "risk_levels.json")
    write_training_csv("sensors", root / "ai4i" / "train.csv", 4 * rows, seed=5)
    write_training_csv("reviews", root / "reviews" / "train.csv", rows, seed=5)
    return root


def test_each_set_is_cut_once_into_training_rows_and_held_out_rows_to_stream(
    tmp_path: Path,
) -> None:
    data = data_folder(tmp_path / "data")
    prepared = prepare(data, tmp_path / "demo", seed=3)
    assert set(prepared) == {"news", "tickets", "sensors", "reviews"}
    text_fields = {"news": "headline", "tickets": "text", "reviews": "text"}
    for domain, name, rows in (("news", "fpb", 150), ("tickets", "banking77", 150),
                               ("reviews", "reviews", 150)):  # fmt: skip
        held_out = prepared[domain]
        with held_out.train.open(newline="", encoding="utf-8") as handle:
            trained = [row["text"] for row in csv.DictReader(handle)]
        streamed = [fields[text_fields[domain]] for fields, _ in held_out.stream]
        assert len(streamed) == round(rows * STREAM_FRACTION)
        assert len(trained) + len(streamed) == rows
        assert held_out.sets == (name,)
    assert prepared["tickets"].taxonomy == data / "banking77" / "risk_levels.json"
    assert {label for _, label in prepared["tickets"].stream} <= set(INTENTS)
    again = prepare(data, tmp_path / "again", seed=3)
    assert all(prepared[domain].stream == again[domain].stream for domain in prepared)


def test_banking77_without_its_taxonomy_is_refused(tmp_path: Path) -> None:
    data = data_folder(tmp_path / "data")
    (data / "banking77" / "risk_levels.json").unlink()
    with pytest.raises(DataError, match=r"risk_levels\.json"):
        prepare(data, tmp_path / "demo", seed=3)


def test_a_set_too_small_to_cut_is_refused(tmp_path: Path) -> None:
    data = data_folder(tmp_path / "data")
    write_training_csv("news", data / "tweets" / "train.csv", 3, seed=1)
    with pytest.raises(DataError, match="has 3 rows: too few"):
        prepare(data, tmp_path / "demo", seed=3)


def test_streamed_rows_come_round_again_as_new_events_with_their_truth(tmp_path: Path) -> None:
    prepared = prepare(data_folder(tmp_path / "data"), tmp_path / "demo", seed=3)
    rows = prepared["sensors"].stream
    fed = list(islice(data_feed("sensors", rows, "run1", random.Random(1), 0.0), 2 * len(rows)))
    assert len({item.event_id for item in fed}) == 2 * len(rows)
    assert [item.truth for item in fed] == [label for _, label in rows] * 2
    assert all(item.event_id.startswith("s-run1-") for item in fed)  # type: ignore[union-attr]


async def feedback_labels(settings: Settings) -> list[FeedbackLabel]:
    consumer = AIOKafkaConsumer(
        settings.topics.feedback_labels.name,
        **aiokafka_options(settings.kafka),
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=5000)
        return [
            FeedbackLabel.model_validate_json(record.value)
            for records in fetched.values()
            for record in records
        ]
    finally:
        await consumer.stop()


@pytest.mark.kafka
def test_the_demo_streams_real_rows_shows_accuracy_and_publishes_feedback(
    kafka: Settings, tmp_path: Path
) -> None:
    data = data_folder(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALYARD_")}
    env |= settings_environment(kafka) | {"COLUMNS": "200"}
    # The runtime choice has tests of its own; measuring it for three fresh models took a
    # third of the worker's start.
    env["SIGNALYARD_INFERENCE__PRECISION"] = "fp32"
    done = subprocess.run(
        [sys.executable, "-m", "signalyard", "demo", "--data", str(data), "--duration", "14",
         "--rate", "8", "--feedback", "0.5", "--retrain-after", "100000", "--malformed", "0"],
        env=env, capture_output=True, text=True, timeout=400,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "news: streaming 30 held-out rows of fpb" in out
    assert "tickets: streaming 30 held-out rows of banking77" in out
    assert "sensors: streaming 120 held-out rows of ai4i" in out
    assert "reviews: streaming 30 held-out rows of reviews" in out
    # No terminal: a line per domain every few seconds instead of the live table.
    assert re.search(r"^\[\s*\d+s\] reviews: \d+ scored, [\d.]+/s, p50 ", out, re.M), out
    assert len(re.findall(r"^\[\s*\d+s\] dead-lettered: ", out, re.M)) >= 2, out
    final = out[out.rindex("Signalyard demo") :]
    for domain in ("news", "tickets", "sensors", "reviews"):
        row = re.search(rf"│ {domain}\s+│\s+(\d+) │.*?│\s+([01]\.\d{{3}}) │", final)
        assert row is not None, final
        scored, accuracy = int(row.group(1)), float(row.group(2))
        assert scored >= 40, final
        assert accuracy >= 0.7, final
    labels = asyncio.run(feedback_labels(kafka))
    assert len(labels) >= 30
    assert {label.labeler for label in labels} == {"demo-analyst"}
    by_domain = {label.domain for label in labels}
    assert by_domain == {"news", "tickets", "sensors", "reviews"}
    for label in labels:
        if label.domain == "tickets":
            assert label.label in INTENTS
        assert label.event_id.startswith(label.domain[0] + "-")
    assert "Traceback" not in done.stderr
