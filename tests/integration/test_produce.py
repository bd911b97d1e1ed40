"""``signalyard produce``: files to raw topics, at a rate, with one-line errors."""

from __future__ import annotations

import asyncio
import csv
import json
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from config.settings import Settings
from signalyard.cli import main
from streams.connection import aiokafka_options
from streams.producer import csv_record, jsonl_record, read_records

SENSOR_ROW = {
    "id": "s-1",
    "ts": "2024-05-01T10:00:00Z",
    "machine_id": "M7",
    "type": "H",
    "air_temp_k": "298.1",
    "process_temp_k": "308.6",
    "rpm": "1551",
    "torque_nm": "42.8",
    "tool_wear_min": "12",
    "message": "",
}


def test_a_csv_row_gets_the_json_types_of_the_schema() -> None:
    key, value = csv_record("sensors", SENSOR_ROW)
    event = json.loads(value)
    assert key == b"M7"
    assert event["type"] == "H" and event["rpm"] == 1551.0 and event["air_temp_k"] == 298.1
    assert "message" not in event  # an empty cell is a missing field


def test_a_csv_row_that_does_not_fit_is_sent_as_it_is_for_the_worker_to_judge() -> None:
    key, value = csv_record("sensors", {**SENSOR_ROW, "rpm": "fast"})
    assert key == b"M7"
    assert json.loads(value)["rpm"] == "fast"


def test_jsonl_lines_are_sent_byte_for_byte() -> None:
    line = b'{"id": "n-1", "ticker": "NOK", "headline": "x"}'
    assert jsonl_record("news", line) == (b"NOK", line)
    assert jsonl_record("news", b"{broken") == (None, b"{broken")
    assert jsonl_record("news", b"[1]") == (None, b"[1]")


def test_read_records_skips_blank_jsonl_lines(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl"
    path.write_bytes(b'{"id": "a", "ticker": "SAP"}\n\n{"id": "b", "tickers": ["SIE"]}\r\n')
    assert [key for key, _ in read_records("news", path)] == [b"SAP", b"SIE"]


def test_bad_arguments_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = tmp_path / "events.txt"
    text.write_text("x")
    for argv in (
        ["produce", "weather", "--file", str(text)],
        ["produce", "news", "--file", str(tmp_path / "missing.csv")],
        ["produce", "news", "--file", str(text)],
        ["produce", "news", "--file", str(text), "--rate", "0"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert error.startswith("signalyard: error: ") and error.count("\n") == 1, error


async def read_topic(settings: Settings, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_options(settings.kafka),
        group_id=f"reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 30
        while len(records) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += [(record.key, record.value) for record in batch]
    finally:
        await consumer.stop()
    return records


def test_produce_sends_every_row_of_a_file_at_the_given_rate(
    kafka: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    topic = kafka.topics.sensors_raw.name
    monkeypatch.setenv("SIGNALYARD_HOME", str(kafka.home_dir))
    monkeypatch.setenv("SIGNALYARD_TOPICS__SENSORS_RAW__NAME", topic)
    path = tmp_path / "sensors.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SENSOR_ROW))
        writer.writeheader()
        for n in range(60):
            writer.writerow({**SENSOR_ROW, "id": f"s-{n}", "machine_id": f"M{n % 4}"})

    started = time.monotonic()
    main(["produce", "sensors", "--file", str(path), "--rate", "100"])
    elapsed = time.monotonic() - started
    assert capsys.readouterr().out.strip() == f"sent 60 events to {topic}"
    assert elapsed >= 0.5  # 60 events at 100/s take about 0.6 s

    records = asyncio.run(read_topic(kafka, topic, 60))
    assert sorted(json.loads(value)["id"] for _, value in records) == sorted(
        f"s-{n}" for n in range(60)
    )
    assert {key for key, _ in records} == {b"M0", b"M1", b"M2", b"M3"}
