"""Replays and backtests: time parsing, range arithmetic and comparisons (pure), then replays on
the real broker with events produced at known Kafka timestamps, into the embedded ClickHouse.

Models: the session's tiny registry (conftest.py) and a second sensors version (another seed
and width); news, whose text batches are padded, is the domain for determinism.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import pytest
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from conftest import query
from helpers import committed, free_port, run_cli

from config.settings import DomainName, Settings, load_settings, settings_environment
from domains.sensors import SensorScore
from models.calibration import UNCALIBRATED
from models.registry import Registry
from models.serving.loading import load_version
from models.training.options import TrainOptions
from models.training.trainer import train_model
from signalyard.demo.synthetic import World, events, write_training_csv
from signalyard.local.worker_process import WorkerProcess
from store.connection import connect
from streams.alerting.rules import RuleBook
from streams.backtest import (
    check_run_id,
    compare,
    default_run_id,
    feedback_metrics,
    would_fire,
)
from streams.connection import aiokafka_options
from streams.processor import predict
from streams.replay import Span, TimeRange, format_time, parse_time, spans
from streams.topics import project_topics, provision_topics
from streams.validation import Rejected

MINUTE_MS = 60_000


# Pure logic


@pytest.fixture(scope="module")
def registry(registry_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's registry (every domain's v1 live) plus sensors v2: another seed, other
    trees."""
    models = tmp_path_factory.mktemp("replay") / "models"
    shutil.copytree(registry_dir, models)
    data = write_training_csv("sensors", models.parent / "sensors.csv", 600)
    options = TrainOptions(epochs=5, seed=99, num_leaves=4, device="cpu", show_progress=False)
    train_model("sensors", "defect", data, Registry(models), options, promote=False)
    return models


def test_times_parse_as_iso_8601_dates_or_epoch_milliseconds() -> None:
    assert parse_time("2026-11-28T10:00:00Z") == 1_795_860_000_000
    assert parse_time("2026-11-28T10:00:00") == 1_795_860_000_000  # no zone: UTC
    assert parse_time("2026-11-28T12:00:00+02:00") == 1_795_860_000_000
    assert parse_time("2026-11-28T10:00:00.250Z") == 1_795_860_000_250
    assert parse_time("2026-11-28") == 1_795_824_000_000  # midnight UTC
    assert parse_time(" 1795860000000 ") == 1_795_860_000_000
    for bad in ("yesterday", "2026-13-01", "", "-5", "1.5"):
        with pytest.raises(ValueError, match="not an ISO 8601 time"):
            parse_time(bad)
    last = parse_time("9999-12-31T23:59:59.999Z")
    assert format_time(last) == "9999-12-31T23:59:59.999Z"
    for beyond in (str(last + 1), "9" * 20):  # past any date: refused, not an overflow
        with pytest.raises(ValueError, match="after 9999-12-31"):
            parse_time(beyond)
    assert format_time(1_795_860_000_000) == "2026-11-28T10:00:00Z"
    assert format_time(1_795_860_000_250) == "2026-11-28T10:00:00.250Z"


def test_a_time_past_any_date_is_one_line_of_the_command(
    tmp_path: Path, registry_dir: Path
) -> None:
    settings = load_settings(home=tmp_path / "home")
    refused = run_cli(settings, registry_dir, "replay", "news", "--from", "1", "--to", "9" * 20)
    assert refused.exit_code == 2, refused.output
    assert "Invalid value for --to" in refused.output and "after 9999-12-31" in refused.output
    assert isinstance(refused.exception, SystemExit)  # a refusal, not a crash


def test_a_range_holds_its_start_and_not_its_end() -> None:
    window = TimeRange(1000, 2000)
    assert 1000 in window and 1999 in window
    assert 999 not in window and 2000 not in window
    assert window.start == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    for start, end in ((2000, 2000), (2001, 2000)):
        with pytest.raises(ValueError, match="empty range"):
            TimeRange(start, end)


def test_spans_run_from_the_first_offset_at_t1_to_the_first_at_t2() -> None:
    log_end = {0: 10, 1: 10, 2: 10, 3: 0}
    first = {0: 2, 1: None, 2: 0, 3: None}  # None: no record at or after T1
    after = {0: 7, 1: None, 2: None, 3: None}  # None: no record at or after T2
    assert spans(first, after, log_end) == [
        Span(0, 2, 7),
        Span(1, 10, 10),  # everything is older than T1: nothing to read
        Span(2, 0, 10),  # up to the end at the time the replay started
        Span(3, 0, 0),
    ]


def test_run_ids() -> None:
    window = TimeRange(parse_time("2026-11-28T10:00:00Z"), parse_time("2026-11-28T11:00:00.5Z"))
    run_id = default_run_id("news", "v3", window)
    assert run_id == "news-v3-20261128T100000Z-20261128T110000.500Z"
    assert check_run_id(run_id) == run_id
    for bad in ("live", "", "a b", "x" * 129, "semi;colon"):
        with pytest.raises(ValueError):
            check_run_id(bad)


def sensor_score(event_id: str, minute: int, probability: float, version: str) -> SensorScore:
    return SensorScore(
        event_id=event_id,
        ts=datetime(2026, 11, 28, 10, tzinfo=UTC) + timedelta(minutes=minute),
        machine_id="m-1" if event_id < "e5" else "m-2",
        failure_probability=probability,
        failure_mode="HDF" if probability >= 0.5 else "none",
        defect=probability >= 0.5,
        model_name="sensors-gbdt",
        model_version=version,
        batch_size=4,
        latency_ms=1.0,
        scored_at=datetime.now(UTC),
    )


STREAK = RuleBook.model_validate(
    {
        "rules": [
            {
                "name": "streak",
                "domain": "sensors",
                "kind": "consecutive",
                "when": {"field": "failure_probability", "above": 0.8},
                "at_least": 2,
                "window": "1h",
                "cooldown": "30m",
                "severity": "critical",
            }
        ]
    }
).for_domain("sensors")


def test_comparison_counts_agreement_feedback_metrics_and_alerts() -> None:
    # m-1 (e1..e4) at minutes 0..3; m-2 (e5..e7). Run b sees two failures in a row on m-1.
    a = [
        sensor_score("e1", 0, 0.1, "v1"),
        sensor_score("e2", 1, 0.9, "v1"),
        sensor_score("e3", 2, 0.2, "v1"),
        sensor_score("e4", 3, 0.95, "v1"),
        sensor_score("e5", 0, 0.1, "v1"),
        sensor_score("e6", 1, 0.1, "v1"),
    ]
    b = [
        sensor_score("e1", 0, 0.1, "v2"),
        sensor_score("e2", 1, 0.9, "v2"),
        sensor_score("e3", 2, 0.85, "v2"),  # the only disagreement among the common events
        sensor_score("e4", 3, 0.95, "v2"),
        sensor_score("e5", 0, 0.2, "v2"),
        sensor_score("e7", 2, 0.1, "v2"),  # not in a
    ]
    feedback = {"e2": "HDF", "e3": "HDF", "e5": "none", "e7": "none"}
    result = compare("sensors", ("a", a), ("b", b), feedback, STREAK)
    assert (result.a.events, result.b.events, result.common) == (6, 6, 5)
    assert result.a.labels == {"false": 4, "true": 2}
    assert result.b.labels == {"false": 3, "true": 3}
    assert result.agreement == pytest.approx(4 / 5)
    assert result.mean_abs_score_change == pytest.approx((0.65 + 0.1) / 5)
    # Feedback on the common events e2, e3, e5: a gets e3 wrong, b gets all three right.
    assert result.feedback == 3
    assert result.a.metrics == {"accuracy": pytest.approx(2 / 3), "macro_f1": pytest.approx(2 / 3)}
    assert result.b.metrics == {"accuracy": 1.0, "macro_f1": 1.0}
    assert result.metric_deltas() == pytest.approx({"accuracy": 1 / 3, "macro_f1": 1 / 3})
    assert result.a.alerts == {} and result.b.alerts == {"streak": 1}
    assert result.a.versions == ["v1"] and result.b.versions == ["v2"]

    empty = compare("sensors", ("a", a), ("c", []), {}, STREAK)
    assert empty.agreement is None and empty.metric_deltas() == {} and empty.common == 0


def test_alerts_are_folded_in_event_time_order_whatever_order_the_rows_come_in() -> None:
    results = [
        sensor_score("e3", 2, 0.9, "v1"),
        sensor_score("e1", 0, 0.9, "v1"),
        sensor_score("e2", 1, 0.1, "v1"),
    ]
    # In event time: 0.9, 0.1, 0.9, so no two in a row; in the given order it would fire.
    assert would_fire("sensors", STREAK, results) == []
    assert would_fire("sensors", [], results) == []
    assert len(would_fire("sensors", STREAK, [*results, sensor_score("e4", 3, 0.9, "v1")])) == 1


def test_feedback_metrics_need_labeled_events() -> None:
    assert feedback_metrics("sensors", [], {}) is None
    scores = [sensor_score("e1", 0, 0.9, "v1"), sensor_score("e2", 1, 0.1, "v1")]
    assert feedback_metrics("sensors", scores, {"e1": "HDF", "e2": "HDF"}) == {
        "accuracy": 0.5,
        "macro_f1": pytest.approx(1 / 3),
    }


class FailsOnNegativeRpm:
    """A scorer that cannot handle one kind of input, as a model might fail on one text."""

    domain = "sensors"
    model_name = "picky"
    version = "v0"
    calibration = UNCALIBRATED

    def score(self, inputs: list[dict]) -> list[dict]:
        if any(reading["rpm"] < 0 for reading in inputs):
            raise ValueError("negative rpm")
        return [{"failure_probability": 0.0, "failure_mode": "none", "defect": False}] * len(inputs)


def test_an_input_the_model_cannot_score_is_rejected_alone() -> None:
    inputs = [{"rpm": 1500.0}, {"rpm": -1.0}, {"rpm": 1200.0}]
    with ThreadPoolExecutor(max_workers=1) as executor:
        outcomes = asyncio.run(predict(executor, FailsOnNegativeRpm(), inputs, "sensors"))
    assert [isinstance(outcome, Rejected) for outcome in outcomes] == [False, True, False]
    assert outcomes[1].kind == "scoring failed" and "negative rpm" in str(outcomes[1])


# Against the real broker

kafka_test = pytest.mark.kafka


def produce_at(
    settings: Settings, domain: DomainName, records: list[tuple[int, int, bytes]]
) -> None:
    """Send (partition, Kafka timestamp ms, value) records, in this order."""

    async def send() -> None:
        producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all")
        await producer.start()
        try:
            topic = settings.topics.raw(domain).name
            for partition, timestamp, value in records:
                await producer.send(topic, value, partition=partition, timestamp_ms=timestamp)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def synthetic(domain: DomainName, count: int, seed: int) -> list[bytes]:
    """Events whose times start two minutes before ``recent_minute``: no later than the Kafka
    timestamps they are given here, as the pipeline's bound on event time requires."""
    world = World(seed=seed)
    world.clock = datetime.fromtimestamp(recent_minute() / 1000, UTC) - timedelta(minutes=2)
    return [value for _, value in islice(events(world, domain), count)]


def event_id(value: bytes) -> str:
    return json.loads(value)["id"]


def produce_one_a_millisecond(
    settings: Settings, domain: DomainName, values: list[bytes]
) -> tuple[int, int]:
    """The values a millisecond apart, round robin over the partitions; their [T1, T2)."""
    topic = settings.topics.raw(domain)
    asyncio.run(provision_topics(settings.kafka, [topic]))
    t1 = recent_minute()
    produce_at(settings, domain, [(n % topic.partitions, t1 + n, v) for n, v in enumerate(values)])
    return t1, t1 + len(values)


def recent_minute() -> int:
    """A whole minute an hour ago: within the broker's accepted timestamps, clear of now."""
    return (time.time_ns() // 1_000_000 // MINUTE_MS - 60) * MINUTE_MS


async def live_group_commits(settings: Settings, group: str, offset: int) -> None:
    """A live consumer group that has read the first ``offset`` records of each partition."""
    topic = settings.topics.sensors_raw.name
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_options(settings.kafka),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        while len(consumer.assignment()) < settings.topics.sensors_raw.partitions:
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({tp: offset for tp in consumer.assignment()})
    finally:
        await consumer.stop()


@kafka_test
def test_replay_takes_exactly_the_range_and_leaves_live_consumers_and_tables_alone(
    kafka: Settings, registry: Path
) -> None:
    settings = kafka
    asyncio.run(provision_topics(settings.kafka, project_topics(settings)))
    t1 = recent_minute()
    t2 = t1 + 10 * MINUTE_MS
    values = iter(synthetic("sensors", 200, seed=5))
    plan: list[tuple[int, int, bytes]] = []
    expected: set[str] = set()
    malformed = {
        2: b'{"id": "broken", "machine_id": "m"',
        3: b'{"id": "no-rpm", "ts": "2026-11-28T10:00:00Z"}',
    }
    for partition in range(settings.topics.sensors_raw.partitions):
        stamps = [t1 - MINUTE_MS, t1 - 1, t1, t1 + 1 + partition, t1 + 5 * MINUTE_MS]
        stamps += [t1 - 5, t1 + 6 * MINUTE_MS]  # out of order: the first is before T1
        stamps += [t2 - 1, t2, t2 + 1, t2 + MINUTE_MS]
        for stamp in stamps:
            value = next(values)
            plan.append((partition, stamp, value))
            if t1 <= stamp < t2:
                expected.add(event_id(value))
            if stamp == t1 and partition in malformed:
                plan.append((partition, t1 + 2 * MINUTE_MS, malformed[partition]))
    produce_at(settings, "sensors", plan)
    group = f"live-{uuid.uuid4().hex[:8]}"
    asyncio.run(live_group_commits(settings, group, offset=3))
    before = asyncio.run(committed(settings, group))

    result = run_cli(
        settings,
        registry,
        *("replay", "sensors", "--from", format_time(t1), "--to", str(t2), "--run-id", "r1"),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "r1"
    assert "2 malformed (not JSON 1, invalid event 1)" in result.stderr

    scored = {row[0] for row in query(settings, "SELECT event_id FROM backtest_sensors_scores")}
    assert scored == expected
    [run] = query(
        settings,
        "SELECT domain, model_version, from_ts, to_ts, records, skipped, events, dead, "
        "dead_kinds FROM backtest_runs FINAL WHERE run_id = 'r1'",
    )
    partitions = settings.topics.sensors_raw.partitions
    # Per partition: from the record at T1 to the one at T2, that is 6 records (5 in the range
    # and the out-of-order one before T1), and the 2 malformed ones.
    assert len(expected) == 5 * partitions
    assert run[:2] == ("sensors", "v1")
    assert [run[2].timestamp() * 1000, run[3].timestamp() * 1000] == [t1, t2]
    assert run[4:] == (
        6 * partitions + 2,
        partitions,
        len(expected),
        2,
        {"not JSON": 1, "invalid event": 1},
    )

    assert asyncio.run(committed(settings, group)) == before
    assert set(before.values()) == {3}
    for table in ("sensors_scores", "sensors_events", "deadletter"):
        assert query(settings, f"SELECT count() FROM {table}") == [(0,)], table

    # The same run id again, a millisecond later: the events at T1 leave the run.
    at_t1 = {event_id(value) for _, stamp, value in plan if stamp == t1}
    again = run_cli(
        settings,
        registry,
        "replay",
        "sensors",
        "--from",
        str(t1 + 1),
        "--to",
        str(t2),
        "--run-id",
        "r1",
    )
    assert again.exit_code == 0, again.output
    scored = {row[0] for row in query(settings, "SELECT event_id FROM backtest_sensors_scores")}
    assert scored == expected - at_t1 and len(at_t1) == partitions
    runs = query(settings, "SELECT events FROM backtest_runs FINAL WHERE run_id = 'r1'")
    assert runs == [(len(expected) - partitions,)]


@kafka_test
def test_two_versions_compared_with_each_other_and_with_live(
    kafka: Settings, registry: Path
) -> None:
    settings = kafka
    values = synthetic("sensors", 300, seed=8)
    t1, t2 = produce_one_a_millisecond(settings, "sensors", values)
    window = ("--from", str(t1), "--to", str(t2))
    for run, version in (("a", "v1"), ("b", "v2")):
        replayed = run_cli(
            settings,
            registry,
            "replay",
            "sensors",
            *window,
            "--version",
            version,
            "--run-id",
            run,
        )
        assert replayed.exit_code == 0, replayed.output

    # Live scores of these events, as a worker on v1 would have written them; and feedback.
    client = connect(settings.clickhouse_dsn)
    try:
        client.command(
            "INSERT INTO sensors_scores SELECT * EXCEPT run_id "
            "FROM backtest_sensors_scores FINAL WHERE run_id = 'a'"
        )
        labeled = [event_id(v) for v in values[:40]]
        client.insert(
            "feedback",
            [[i, "sensors", "none", "ana", datetime.now(UTC), datetime.now(UTC)] for i in labeled],
            column_names=["event_id", "domain", "label", "labeler", "ts", "written_at"],
        )
        rows = client.query(
            "SELECT run_id, event_id, defect FROM backtest_sensors_scores FINAL"
        ).result_rows
    finally:
        client.close()
    flags = {(run, i): defect for run, i, defect in rows}
    ids = [event_id(v) for v in values]
    agree = sum(flags[("a", i)] == flags[("b", i)] for i in ids) / len(ids)

    compared = run_cli(settings, registry, "backtest", "compare", "a", "b", "--json")
    assert compared.exit_code == 0, compared.output
    figures = json.loads(compared.stdout)
    assert (figures["a"]["events"], figures["b"]["events"], figures["common"]) == (300, 300, 300)
    for side, run in (("a", "a"), ("b", "b")):
        defects = sum(flags[(run, i)] for i in ids)
        assert figures[side]["labels"] == {
            k: v for k, v in {"false": 300 - defects, "true": defects}.items() if v
        }
        assert figures[side]["versions"] == ["v1" if run == "a" else "v2"]
        assert figures[side]["metrics"]["accuracy"] >= 0
        assert set(figures[side]["alerts"]) <= {"machine-defect-streak", "machine-failure-rate"}
    assert figures["agreement"] == pytest.approx(agree)
    assert figures["feedback"] == 40
    assert set(figures["metric_deltas"]) == {"accuracy", "macro_f1"}

    against_live = run_cli(settings, registry, "backtest", "compare", "live", "b", "--json")
    assert against_live.exit_code == 0, against_live.output
    live = json.loads(against_live.stdout)
    assert live["a"] == {**figures["a"], "name": "live"}
    assert live["agreement"] == figures["agreement"]

    table = run_cli(settings, registry, "backtest", "compare", "a", "b")
    assert table.exit_code == 0, table.output
    assert f"agreement: {agree:.1%} of 300 events scored by both" in table.stdout
    assert "alerts machine-defect-streak (critical)" in table.stdout
    assert "accuracy (40 labeled)" in table.stdout

    missing = run_cli(settings, registry, "backtest", "compare", "a", "nope")
    assert missing.exit_code != 0 and "no backtest run 'nope'" in missing.output


@kafka_test
def test_replaying_one_range_twice_gives_identical_scores(kafka: Settings, registry: Path) -> None:
    """News: text batches are padded to their longest text, so this is where batch composition
    could change scores. Compared exactly, as stored (Float32)."""
    settings = kafka
    values = synthetic("news", 150, seed=3)
    t1, t2 = produce_one_a_millisecond(settings, "news", values)
    for run in ("first", "second"):
        replayed = run_cli(
            settings,
            registry,
            "replay",
            "news",
            "--from",
            str(t1),
            "--to",
            str(t2),
            "--run-id",
            run,
            "--batch-size",
            "16",
        )
        assert replayed.exit_code == 0, replayed.output
    runs = [news_scores(settings, run) for run in ("first", "second")]
    assert len(runs[0]) == len(values)
    assert runs[0] == runs[1]


def test_a_version_scores_alike_whatever_threads_its_process_ran_with(
    settings: Settings, registry: Path
) -> None:
    """Matrix kernels split their sums by thread, so a process's thread count changes some of
    an event's scores in the last bits (in bf16, in the third digit). A replay run in its own
    process and one run in a process that set other threads must store the same scores."""
    inference = settings.inference.model_copy(update={"precision": "fp32"})  # auto may pick ONNX
    settings = settings.model_copy(update={"registry_dir": registry, "inference": inference})
    world = World(seed=4)
    texts = [json.loads(value)["headline"] for _, value in islice(events(world, "news"), 120)]
    scored = []
    for threads in (1, 2):
        torch.set_num_threads(threads)  # what the process ran with before it loaded the model
        scorer = load_version(settings, "news", "v1")
        assert torch.get_num_threads() == settings.pipeline.torch_threads
        scored.append([scorer.predict_proba(texts[i : i + 16]) for i in range(0, 120, 16)])
    assert all((a == b).all() for a, b in zip(*scored, strict=True))


def news_scores(settings: Settings, run: str) -> list[tuple]:
    """A news run's scores as stored (Float32), by event id."""
    columns = "event_id, label, p_negative, p_neutral, p_positive, sentiment, model_version"
    return query(
        settings,
        f"SELECT {columns} FROM backtest_news_scores FINAL "
        f"WHERE run_id = '{run}' ORDER BY event_id",
    )


def cli_process(settings: Settings, registry: Path, *args: str) -> subprocess.CompletedProcess:
    """The command as a process of its own: what it prints to the terminal, all of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALYARD_")}
    env |= settings_environment(settings)
    env |= {"SIGNALYARD_REGISTRY_DIR": str(registry), "SIGNALYARD_INFERENCE__DEVICE": "cpu"}
    return subprocess.run(
        [sys.executable, "-m", "signalyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )


def wait_ready(port: int, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert worker.running, worker.tail()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the worker was not ready in time:\n" + worker.tail())


@kafka_test
def test_a_replay_beside_a_running_worker_writes_through_it_with_the_same_scores(
    kafka: Settings, registry: Path, tmp_path: Path
) -> None:
    """The worker holds the embedded store: the replay and the comparison go through its web
    port while it scores, and store what a replay with the worker stopped stores."""
    port = free_port()
    settings = kafka.model_copy(
        update={"pipeline": kafka.pipeline.model_copy(update={"web_port": port})}
    )
    values = synthetic("news", 120, seed=4)
    t1, t2 = produce_one_a_millisecond(settings, "news", values)
    window = ("--from", str(t1), "--to", str(t2), "--batch-size", "16")
    overrides = {
        "SIGNALYARD_REGISTRY_DIR": str(registry),
        "SIGNALYARD_PIPELINE__APP_ID": f"t-{uuid.uuid4().hex[:8]}",
        "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "false",
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log", ("worker",), overrides)
    try:
        worker.start("--domain", "news")
        wait_ready(port, worker)
        beside = cli_process(settings, registry, "replay", "news", *window, "--run-id", "beside")
        assert beside.returncode == 0, beside.stderr
        assert f"writing through the worker on port {port}" in beside.stderr
        compared = cli_process(settings, registry, "backtest", "compare", "beside", "beside",
                               "--json")  # fmt: skip
        assert compared.returncode == 0, compared.stderr
        figures = json.loads(compared.stdout)
        assert (figures["a"]["events"], figures["agreement"]) == (len(values), 1.0)
        assert worker.running
    finally:
        assert worker.stop() == 0, worker.tail()
    alone = run_cli(settings, registry, "replay", "news", *window, "--run-id", "alone")
    assert alone.exit_code == 0, alone.output
    runs = [news_scores(settings, run) for run in ("beside", "alone")]
    assert len(runs[0]) == len(values)
    assert runs[0] == runs[1]
    [(events,)] = query(settings, "SELECT events FROM backtest_runs FINAL WHERE run_id = 'beside'")
    assert events == len(values)


@kafka_test
def test_replay_refuses_in_one_line_an_embedded_store_held_by_a_process_that_does_not_serve_it(
    kafka: Settings, registry: Path
) -> None:
    settings = kafka
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from store.connection import connect; "
            f"c = connect({settings.clickhouse_dsn!r}); "
            "print('open', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        result = cli_process(
            settings, registry, "replay", "sensors", "--from", "2026-01-01", "--to", "2026-01-02"
        )
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()  # no traceback, no line of the engine's own
    assert line.startswith("signalyard: error: the embedded ClickHouse in ")
    assert "is open in another process" in line and "web port" in line
