"""A day in an hour: every domain at a steady rate through one worker, with a model swap, an
adaptation round and a replay along the way; is anything growing, lagging or lost?

Every ``--sample-s`` the worker's process tree (the worker and its children: the explainer
pool) is measured: resident memory, open file descriptors and threads (psutil), the consumer
lag and the results held in the alert state's windows (its ``/metrics``: what the worker's
memory grows with until the windows are full), and the p50 / p99 of the end-to-end latency of
the results that arrived since the last sample (from the raw record's Kafka timestamp to a
``read_committed`` reader). Along the way, at a third of the run the live sensors model is
swapped (a copy registered and promoted, ``models promote`` announcing it), at half a news
adaptation round is asked for (``signalyard retrain news``; the trainer runs beside the worker
and learns from the feedback labels the run publishes for one news event in five), and at two
thirds the sensor readings so far are replayed through the worker (``signalyard replay``). At
the end the feed stops, the worker drains and stops, and every event sent is counted in the
store (FINAL).

A day is shrunk into the hour for the alert state too: every rule's window and cool-down are
cut to ``--alert-window`` (5 minutes) and entities are forgotten after both, so the windows are
full before warm-up ends and what grows after it is not state filling up (``--alert-window
off`` keeps the rules as configured, whose hour-long and week-long windows fill all run).

Memory and descriptors are judged after warm-up (the first fifth of the samples): the slope
of a least-squares line through the rest, per hour, and what grew between the end of warm-up
and the last sample, named (threads by name, descriptors by what they point at, from
``/proc``). The broker must be up (``signalyard stack up``); models are trained from the
synthetic world when the registry has none.

    .venv/bin/python benchmarks/bench_soak.py [--minutes 60] [--sample-s 60]
        [--rates news=20,tickets=10,reviews=10,sensors=200] [--alert-window 5m | off]
        [--registry DIR] [--out benchmarks/results/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from recording import record
from rich.console import Console
from rich.table import Table

import domains
from config.settings import (
    DomainName,
    Settings,
    load_settings,
    settings_environment,
    with_topic_suffix,
)
from models.registry import Registry
from signalyard.demo.bootstrap import ensure_models
from signalyard.demo.feed import synthetic_feed
from signalyard.demo.monitor import percentile
from signalyard.demo.synthetic import World
from signalyard.local.worker_process import WorkerProcess
from store.connection import connect
from store.sink import count_final
from streams.adaptation.messages import FeedbackLabel
from streams.alerting.rules import load_rules, parse_duration
from streams.connection import aiokafka_options, consumer_options
from streams.groups import wait_until_stable
from streams.topics import project_topics, provision_topics

console = Console(width=120)
LABEL_EVERY = 5  # one news event in this many gets its true label as feedback
DRAIN_TIMEOUT_S = 600
DIGITS = re.compile(r"\d+")
DURATION_LINE = re.compile(r'^((?:window|cooldown)\s*=\s*)"([^"]*)"', re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    minute: float
    rss_mb: float
    fds: int
    threads: int
    lag: float
    alert_results: float  # held in the alert state's windows (what memory grows with)
    results: int  # arrived since the last sample
    p50_ms: float | None
    p99_ms: float | None
    event: str  # what happened since the last sample


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def measure(pid: int) -> tuple[float, int, int]:
    """Resident MB, open descriptors and threads of the process and its children."""
    rss = fds = threads = 0
    for process in tree(pid):
        try:
            rss += process.memory_info().rss
            fds += process.num_fds()
            threads += process.num_threads()
        except psutil.NoSuchProcess:
            continue
    return rss / 2**20, fds, threads


def by_kind(pid: int) -> dict[str, Counter[str]]:
    """The process tree's threads by name and descriptors by what they point at (digits read
    as N), from ``/proc`` (Linux; empty elsewhere): what grew between two samples, named."""
    threads: Counter[str] = Counter()
    fds: Counter[str] = Counter()
    for process in tree(pid):
        base = Path(f"/proc/{process.pid}")
        with contextlib.suppress(OSError):
            for task in (base / "task").iterdir():
                with contextlib.suppress(OSError):
                    threads[DIGITS.sub("N", (task / "comm").read_text().strip())] += 1
            for fd in (base / "fd").iterdir():
                with contextlib.suppress(OSError):
                    fds[DIGITS.sub("N", os.readlink(fd))] += 1
    return {"threads": threads, "fds": fds}


def grown(
    before: dict[str, Counter[str]], after: dict[str, Counter[str]]
) -> dict[str, dict[str, int]]:
    """The kinds whose count changed, by how much."""
    return {
        what: {
            name: after[what][name] - before[what][name]
            for name in sorted(before[what].keys() | after[what].keys())
            if after[what][name] != before[what][name]
        }
        for what in before
    }


def scrape(port: int) -> tuple[float, float]:
    """The worker's consumer lag and the results its alert state holds (its ``/metrics``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body = response.read().decode()
    samples = [s for family in text_string_to_metric_families(body) for s in family.samples]
    return (
        sum(s.value for s in samples if s.name == "signalyard_consumer_lag"),
        sum(s.value for s in samples if s.name == "signalyard_alert_results_held"),
    )


def slope_per_hour(minutes: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against time, per hour."""
    if len(minutes) < 2:
        return 0.0
    return statistics.linear_regression(minutes, values).slope * 60


def with_alert_window(settings: Settings, cap: timedelta, folder: Path) -> Settings:
    """The settings with every alert rule's window and cool-down cut to ``cap`` (a copy of the
    rules file in ``folder``) and entities forgotten after both."""
    text = settings.rules_path.read_text()
    shown = f'"{round(cap.total_seconds() * 1000)}ms"'
    cut = DURATION_LINE.sub(
        lambda line: line[0] if parse_duration(line[2]) <= cap else f"{line[1]}{shown}", text
    )
    rules = folder / "soak-alerts.toml"
    rules.write_text(cut)
    book = load_rules(rules)  # still valid, and nothing longer than the cap is left
    assert all(rule.window <= cap and rule.cooldown <= cap for rule in book.rules)
    alerts = settings.alerts.model_copy(
        update={"rules_file": rules, "state_ttl_s": 2 * cap.total_seconds()}
    )
    return settings.model_copy(update={"alerts": alerts})


def cli(env: dict[str, str], *args: str) -> str:
    """A ``signalyard`` command with the run's settings; its output, or an error."""
    done = subprocess.run(
        [sys.executable, "-m", "signalyard", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"signalyard {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return done.stdout


class Run:
    """The run's feed, its reader of results, and what each sample saw."""

    def __init__(self, settings: Settings, rates: dict[DomainName, float]) -> None:
        self.settings = settings
        self.rates = rates
        self.sent: dict[DomainName, set[str]] = {domain: set() for domain in rates}
        self.latencies: list[float] = []
        self.results = 0
        self.labels: dict[str, str] = {}
        self.feeding = True

    async def feed(self, domain: DomainName, world: World) -> None:
        producer = AIOKafkaProducer(**aiokafka_options(self.settings.kafka), acks="all")
        await producer.start()
        topic = self.settings.topics.raw(domain).name
        records = synthetic_feed(world, domain, malformed=0.0)
        interval = 1 / self.rates[domain]
        started = time.monotonic()
        count = 0
        try:
            while self.feeding:
                fed = next(records)
                await producer.send(topic, fed.value, key=fed.key)
                assert fed.event_id is not None and fed.truth is not None
                self.sent[domain].add(fed.event_id)
                if domain == "news" and count % LABEL_EVERY == 0:
                    self.labels[fed.event_id] = fed.truth
                count += 1
                await asyncio.sleep(max(0.0, started + count * interval - time.monotonic()))
            await producer.flush()
        finally:
            await producer.stop()

    async def read(self) -> None:
        """Latency of every result, and feedback for the labeled news events once scored."""
        topics = {self.settings.topics.scored(domain).name: domain for domain in self.rates}
        consumer = AIOKafkaConsumer(
            *topics, **consumer_options(self.settings.kafka), auto_offset_reset="earliest"
        )
        producer = AIOKafkaProducer(**aiokafka_options(self.settings.kafka), acks="all")
        await consumer.start()
        await producer.start()
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=5000)
                now = time.time()
                for tp, records in fetched.items():
                    for record in records:
                        self.results += 1
                        result = json.loads(record.value)
                        scored_at = datetime.fromisoformat(result["scored_at"]).timestamp()
                        self.latencies.append((now - scored_at) * 1000 + result["latency_ms"])
                        truth = self.labels.pop(result["event_id"], None)
                        if truth is not None:
                            label = FeedbackLabel(
                                event_id=result["event_id"], domain=topics[tp.topic],
                                label=truth, labeler="soak", ts=datetime.now(UTC),
                            )  # fmt: skip
                            await producer.send(
                                self.settings.topics.feedback_labels.name,
                                label.model_dump_json().encode(),
                                key=result["event_id"].encode(),
                            )
        finally:
            await consumer.stop()
            await producer.stop()

    def take(self) -> tuple[int, float | None, float | None]:
        latencies, self.latencies = self.latencies, []
        count, self.results = self.results, 0
        return count, percentile(latencies, 0.5), percentile(latencies, 0.99)


async def soak(arguments: argparse.Namespace, scratch: Path) -> dict:
    names = list(arguments.rates)
    run = uuid.uuid4().hex[:8]
    port = arguments.web_port
    settings = with_topic_suffix(
        load_settings(home=scratch / "home", registry_dir=arguments.registry), run
    )
    window = arguments.alert_window
    if window is not None:
        settings = with_alert_window(settings, window, scratch)
    ensure_models(settings, tuple(names))
    await provision_topics(settings.kafka, project_topics(settings))
    app_id = f"soak-{run}"
    overrides = {
        "SIGNALYARD_PIPELINE__APP_ID": app_id,
        "SIGNALYARD_PIPELINE__WEB_PORT": str(port),
    }
    env = {**os.environ, **settings_environment(settings), **overrides}
    worker = WorkerProcess(settings, scratch / "worker.log", overrides=overrides).start()
    trainer = WorkerProcess(settings, scratch / "trainer.log", ("trainer",), overrides).start()
    group = settings.pipeline.model_copy(update={"app_id": app_id}).scoring_group
    if not await wait_until_stable(settings.kafka, group, 1, 240):
        raise RuntimeError(f"the worker did not start; see {scratch / 'worker.log'}")
    assert worker.process is not None
    state = Run(settings, arguments.rates)
    started_at = datetime.now(UTC)
    # One world for every feed: its clock steps 1-40 ms an event, held back to the present,
    # so above about 50 events/s in all (the default rates) event time keeps up with the wall
    # clock. A world per feed lags it where that feed is slower, and windows of event time
    # then take that much longer to fill.
    world = World(seed=1)
    tasks = [asyncio.create_task(state.feed(domain, world)) for domain in names]
    reader = asyncio.create_task(state.read())
    samples: list[Sample] = []
    events = {
        max(1, arguments.samples // 3): "sensors model swapped",
        max(1, arguments.samples // 2): "news adaptation round asked",
        max(1, 2 * arguments.samples // 3): "sensors replayed",
    }
    warmed = max(1, arguments.samples // 5)  # the first fifth of the samples: warm-up
    kinds: dict[int, dict[str, Counter[str]]] = {}
    began = time.monotonic()
    try:
        for n in range(1, arguments.samples + 1):
            await asyncio.sleep(max(0.0, began + n * arguments.sample_s - time.monotonic()))
            event = events.get(n, "")
            if event == "sensors model swapped":
                registry = Registry(settings.models_dir)
                live = registry.live_dir("sensors")
                copy = Path(shutil.copytree(live, scratch / "swap"))
                version = registry.register("sensors", copy, promote=False)
                await asyncio.to_thread(cli, env, "models", "promote", "sensors", version)
            elif event == "news adaptation round asked":
                await asyncio.to_thread(cli, env, "retrain", "news")
            elif event == "sensors replayed":
                to = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
                since = started_at.isoformat(timespec="seconds").replace("+00:00", "Z")
                await asyncio.to_thread(
                    cli, env, "replay", "sensors", "--from", since, "--to", to, "--run-id", "soak"
                )
            rss, fds, threads = measure(worker.process.pid)
            if n in (warmed, arguments.samples):
                kinds[n] = by_kind(worker.process.pid)
            count, p50, p99 = state.take()
            samples.append(
                Sample(
                    round((time.monotonic() - began) / 60, 2), round(rss, 1), fds, threads,
                    *scrape(port), count, p50, p99, event,
                )
            )  # fmt: skip
            console.print(samples[-1])
    finally:
        state.feeding = False
        await asyncio.gather(*tasks, return_exceptions=True)
    drained = time.monotonic() + DRAIN_TIMEOUT_S
    while scrape(port)[0] > 0 and time.monotonic() < drained:
        await asyncio.sleep(2)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    trainer.stop()
    status = worker.stop()
    client = connect(settings.clickhouse_dsn)
    try:
        stored = {d: count_final(client, domains.get(d).scores_table) for d in names}
    finally:
        client.close()
    sent = {domain: len(ids) for domain, ids in state.sent.items()}
    steady = samples[warmed:]
    minutes = [s.minute for s in steady]
    return {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": psutil.cpu_count()},
        "command": " ".join(sys.argv),
        "rates": arguments.rates,
        "alert_window_s": None if window is None else window.total_seconds(),
        "samples": [asdict(s) for s in samples],
        "rss_mb_per_hour": slope_per_hour(minutes, [s.rss_mb for s in steady]),
        "fds_per_hour": slope_per_hour(minutes, [float(s.fds) for s in steady]),
        "threads_per_hour": slope_per_hour(minutes, [float(s.threads) for s in steady]),
        "grown_after_warm_up": grown(kinds[warmed], kinds[arguments.samples]),
        "max_lag": max((s.lag for s in samples), default=0.0),
        "sent": sent,
        "stored": stored,
        "worker_exit": status,
        "swaps": cli(env, "models", "list"),
    }


def alert_window(text: str) -> timedelta | None:
    if text == "off":
        return None
    try:
        window = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if window <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r}: a window must be longer than 0")
    return window


def rates(text: str) -> dict[DomainName, float]:
    chosen = {}
    for part in text.split(","):
        name, _, rate = part.partition("=")
        if name not in domains.names():
            raise argparse.ArgumentTypeError(f"unknown domain {name!r}")
        chosen[name] = float(rate)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument(
        "--rates", type=rates, default=rates("news=20,tickets=10,reviews=10,sensors=200")
    )
    parser.add_argument(
        "--alert-window",
        type=alert_window,
        default=alert_window("5m"),
        help="cut every alert window and cool-down to this (default 5m), or off",
    )
    parser.add_argument("--web-port", type=int, default=16066)
    parser.add_argument("--registry", type=Path, default=None, help="default: a scratch one")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/soak.json")
    arguments = parser.parse_args()
    arguments.samples = max(3, round(arguments.minutes * 60 / arguments.sample_s))
    with tempfile.TemporaryDirectory(prefix="signalyard-soak-") as scratch:
        figures = asyncio.run(soak(arguments, Path(scratch)))
    table = Table(title="Signalyard soak", title_justify="left")
    columns = ("minute", "RSS MB", "fds", "threads", "lag", "held", "results", "p50 ms", "p99 ms")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("event")
    for s in figures["samples"]:
        table.add_row(
            f"{s['minute']:.1f}", f"{s['rss_mb']:.0f}", str(s["fds"]), str(s["threads"]),
            f"{s['lag']:.0f}", f"{s['alert_results']:.0f}", str(s["results"]),
            "-" if s["p50_ms"] is None else
            f"{s['p50_ms']:.0f}", "-" if s["p99_ms"] is None else f"{s['p99_ms']:.0f}", s["event"],
        )  # fmt: skip
    console.print(table)
    slopes = (
        f"after warm-up: RSS {figures['rss_mb_per_hour']:+.1f} MB/h, descriptors "
        f"{figures['fds_per_hour']:+.1f}/h, threads {figures['threads_per_hour']:+.1f}/h; "
        f"max lag {figures['max_lag']:.0f}; sent {figures['sent']}, stored {figures['stored']}"
    )
    console.print(slopes)
    growth = "; ".join(
        f"{what} {', '.join(f'{name} {change:+d}' for name, change in changes.items())}"
        for what, changes in figures["grown_after_warm_up"].items()
        if changes
    )
    console.print(f"grown after warm-up, by kind: {growth or 'nothing'}")
    samples = figures["samples"]
    record(
        "soak",
        f"A soak: {arguments.minutes:g} minutes of every domain through one worker",
        json.loads(json.dumps(figures, default=str)),
        out=arguments.out,
        tables=[
            {
                "title": "",
                "columns": [
                    "minute",
                    "RSS MB",
                    "descriptors",
                    "threads",
                    "lag",
                    "alert results held",
                    "results",
                    "p50 ms",
                    "p99 ms",
                    "during the minute",
                ],
                "rows": [
                    [
                        s["minute"],
                        s["rss_mb"],
                        s["fds"],
                        s["threads"],
                        s["lag"],
                        s["alert_results"],
                        s["results"],
                        s["p50_ms"],
                        s["p99_ms"],
                        s["event"],
                    ]
                    for s in samples
                ],
            }
        ],
        plots=[
            {
                "title": "Soak: consumer lag",
                "x_label": "minute",
                "y_label": "events behind",
                "series": {"lag": [[s["minute"], s["lag"]] for s in samples]},
            },
            {
                "title": "Soak: resident memory",
                "x_label": "minute",
                "y_label": "MB",
                "series": {"RSS": [[s["minute"], s["rss_mb"]] for s in samples]},
            },
            {
                "title": "Soak: results held in the alert windows",
                "x_label": "minute",
                "y_label": "results",
                "series": {"held": [[s["minute"], s["alert_results"]] for s in samples]},
            },
        ],
        notes=[
            f"{slopes[0].upper()}{slopes[1:]}.",
            f"Grown from the end of warm-up to the last sample, by kind: {growth or 'nothing'}.",
        ],
    )
    lost = {d: figures["sent"][d] - figures["stored"][d] for d in figures["sent"]}
    if any(lost.values()):
        raise SystemExit(f"not every event was stored once: {lost}")


if __name__ == "__main__":
    main()
