"""End-to-end pipeline throughput and latency on this machine, beside the model's own ceiling.

One run reports:

* news, model only: texts/s of the live news scorer on batches of ``max_batch_size``, in this
  process, with the torch threads the worker will use: the ceiling on this hardware;
* news, end to end: events/s from the first produce until every result is on the scored topic,
  through one ``signalyard worker`` process with micro-batching; then the same with a naive
  worker that scores one event at a time (batch size 1, one batch in flight);
* news latency at half the measured end-to-end capacity: p50 and p99 of each result's
  ``latency_ms`` (from the raw record's Kafka timestamp to the end of scoring);
* sensors, end to end: events/s through one worker, whose model costs almost nothing, so this
  is the pipeline's own overhead: Kafka in, validation, batching, Kafka out, ClickHouse; once
  with the producer running beside it, once draining a backlog produced before it started
  (the worker's own rate, with the cores to itself: ``--sensors-only`` runs just these two);
* with ``--explanations`` (or only these, ``--explanations-only``): news end to end with
  alerting in the worker and a rule that fires often, without and then with each alert's
  triggering event explained (``streams.explaining``): what explanations cost the pipeline;
* with ``--guarantees-only``: news and sensors end to end under ``at_least_once`` and under
  ``exactly_once`` at each transaction interval of ``--intervals-ms``: what exactly once costs.

Besides ``latency_ms`` (to the end of scoring), each phase reports when a ``read_committed``
subscriber saw each result ("seen": its arrival at the reader less the record's Kafka
timestamp); under ``exactly_once`` results wait for their transaction's commit.

A result reaches the scored topic and ClickHouse in the same delivery step, before the worker
acks the batch; after each phase the worker is stopped and its embedded ClickHouse store is
checked to hold every event exactly once (FINAL), so a phase whose rows did not all land fails.
Producer, results reader and worker share the machine's cores, as they would in a demo. The
broker must be up (``signalyard stack up``); models are trained from the synthetic world when
the registry at ``--registry`` has none.

    .venv/bin/python benchmarks/bench_pipeline.py [--news-events 1500] [--sensor-events 30000]
        [--explanations | --explanations-only | --sensors-only
         | --guarantees-only [--intervals-ms 100,1000]]
        [--latency-seconds 20] [--torch-threads 0] [--registry DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from aiokafka import AIOKafkaConsumer
from recording import add_note_option, record
from rich.console import Console
from rich.table import Table

import domains
from config.settings import DomainName, Settings, load_settings, with_topic_suffix
from models.serving.loading import load_live_scorer
from signalyard.demo.bootstrap import ensure_models
from signalyard.demo.monitor import percentile
from signalyard.demo.synthetic import World, events
from signalyard.local.worker_process import WorkerProcess
from store.connection import connect
from store.sink import count_final
from streams.connection import consumer_options
from streams.groups import wait_until_stable
from streams.producer import produce
from streams.topics import project_topics, provision_topics
from streams.validation import EventLimits, parse_event

console = Console(width=110)
WORKER_READY_TIMEOUT_S = 240
RESULTS_TIMEOUT_S = 600


@dataclass(frozen=True)
class Arrivals:
    """What a results reader saw: loop times of the first fetch and of the last result, the
    number of results in that first fetch, and every result's latencies (ms)."""

    first: float
    first_count: int
    last: float
    latencies: list[float]  # to the end of scoring
    seen: list[float]  # to the arrival at the reader


@dataclass(frozen=True)
class Phase:
    name: str
    domain: DomainName
    events: int
    seconds: float
    events_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    seen_p50_ms: float | None
    seen_p99_ms: float | None
    stored: int
    alerts: int | None = None  # phases with alerting: alerts stored, and those explained
    explained: int | None = None


def model_ceiling(settings: Settings, count: int) -> float:
    """Texts/s of the live news scorer alone, batch after batch, after one warm-up batch."""
    scorer = load_live_scorer(settings, "news")
    world = World(seed=3)
    limits = EventLimits.of(settings.pipeline)
    texts = [
        domains.get("news").model_input(
            parse_event("news", json.dumps(world.draw("news")[0]).encode(), limits)
        )
        for _ in range(count)
    ]
    size = settings.batching.of("news").max_batch_size
    scorer.score(texts[:size])
    started = time.perf_counter()
    for start in range(0, count, size):
        scorer.score(texts[start : start + size])
    return count / (time.perf_counter() - started)


async def read_results(
    settings: Settings, domain: DomainName, expected: int, positioned: asyncio.Event
) -> Arrivals:
    """Read the scored topic until ``expected`` distinct results have arrived."""
    topic = settings.topics.scored(domain).name
    consumer = AIOKafkaConsumer(
        topic,
        **consumer_options(settings.kafka),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    latencies: list[float] = []
    arrivals: list[float] = []
    seen: set[str] = set()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        positioned.set()
        loop = asyncio.get_running_loop()
        first, first_count = 0.0, 0
        while len(seen) < expected:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            now = time.time()
            if fetched and not seen:
                first = loop.time()
                first_count = sum(len(records) for records in fetched.values())
            for records in fetched.values():
                for record in records:
                    result = json.loads(record.value)
                    if result["event_id"] not in seen:
                        seen.add(result["event_id"])
                        latency = float(result["latency_ms"])
                        latencies.append(latency)
                        scored_at = datetime.fromisoformat(result["scored_at"]).timestamp()
                        arrivals.append((now - scored_at) * 1000 + latency)
        return Arrivals(first, first_count, loop.time(), latencies, arrivals)
    finally:
        await consumer.stop()


async def run_phase(
    base: Settings,
    name: str,
    domain: DomainName,
    count: int,
    rate: float | None,
    overrides: dict[str, str],
    scratch: Path,
    alerting: bool = False,
    backlog: bool = False,
) -> Phase:
    """One worker on fresh topics and a fresh store: produce ``count`` events, await them all.

    ``backlog``: the events are all on the raw topic before the worker starts, and the rate is
    the worker's alone: results after its first fetch over the time from that fetch's first
    result to the last (the producer no longer shares the cores, nor sets the pace)."""
    run = uuid.uuid4().hex[:8]
    settings = with_topic_suffix(
        load_settings(home=scratch / name, registry_dir=base.models_dir), run
    )
    await provision_topics(settings.kafka, project_topics(settings))
    app_id = f"bench-{name}-{run}"
    records = islice(events(World(seed=5), domain), count)
    if backlog:
        await produce(settings.kafka, settings.topics.raw(domain).name, records, rate)
    worker = WorkerProcess(
        settings,
        scratch / f"{name}.log",
        overrides={
            "SIGNALYARD_PIPELINE__APP_ID": app_id,
            "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "true" if alerting else "false",
            **overrides,
        },
    ).start("--domain", domain)
    try:
        group = settings.pipeline.model_copy(update={"app_id": app_id}).scoring_group
        if not await wait_until_stable(settings.kafka, group, 1, WORKER_READY_TIMEOUT_S):
            raise RuntimeError(f"the {name} worker did not start; see {worker.log}")
        positioned = asyncio.Event()
        reader = asyncio.create_task(read_results(settings, domain, count, positioned))
        await positioned.wait()
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not backlog:
            await produce(settings.kafka, settings.topics.raw(domain).name, records, rate)
        seen = await asyncio.wait_for(reader, RESULTS_TIMEOUT_S)
    finally:
        status = worker.stop()
    if status != 0:
        raise RuntimeError(f"the {name} worker exited with {status}; see {worker.log}")
    client = connect(settings.clickhouse_dsn)
    try:
        stored = count_final(client, f"{domain}_scores")
        alerts, explained = (
            client.query(
                "SELECT count(), countIf(JSONExtractString(evidence, 'explanation') != '') "
                "FROM alerts FINAL"
            ).result_rows[0]
            if alerting
            else (None, None)
        )
    finally:
        client.close()
    seconds = seen.last - (seen.first if backlog else started)
    timed = count - seen.first_count if backlog else count
    return Phase(
        name,
        domain,
        count,
        seconds,
        timed / seconds,
        percentile(seen.latencies, 0.50),
        percentile(seen.latencies, 0.99),
        percentile(seen.seen, 0.50),
        percentile(seen.seen, 0.99),
        stored,
        alerts,
        explained,
    )


# A news rule that fires often on the synthetic stream: two negative headlines of a ticker
# within five minutes of event time, at most once a minute per ticker.
FREQUENT_ALERTS = """
[[rules]]
name = "bench-negative-news"
domain = "news"
kind = "count"
when = { field = "label", equals = "negative" }
at_least = 2
window = "5m"
severity = "info"
cooldown = "1m"
"""


async def explanation_phases(
    base: Settings, count: int, threads: dict[str, str], scratch: Path
) -> list[Phase]:
    """News end to end with alerting in the worker on a stream that fires alerts: without
    explanations, then with the triggering events explained."""
    rules = scratch / "bench-alerts.toml"
    rules.write_text(FREQUENT_ALERTS, encoding="utf-8")
    phases = []
    for name, explain in (("news-alerts", "false"), ("news-alerts-explained", "true")):
        overrides = {
            **threads,
            "SIGNALYARD_ALERTS__RULES_FILE": str(rules),
            "SIGNALYARD_EXPLANATIONS__IN_ALERTS": explain,
        }
        phases.append(
            await run_phase(base, name, "news", count, None, overrides, scratch, alerting=True)
        )
        _done(phases[-1])
    return phases


async def guarantee_phases(
    base: Settings, arguments: argparse.Namespace, threads: dict[str, str], scratch: Path
) -> list[Phase]:
    """News and sensors end to end under each processing guarantee (and transaction interval)."""
    settings = [("at_least_once", base.pipeline.commit_interval_ms)] + [
        ("exactly_once", int(ms)) for ms in arguments.intervals_ms.split(",")
    ]
    phases = []
    for guarantee, interval_ms in settings:
        overrides = {
            **threads,
            "SIGNALYARD_PIPELINE__PROCESSING_GUARANTEE": guarantee,
            "SIGNALYARD_PIPELINE__COMMIT_INTERVAL_MS": str(interval_ms),
        }
        for domain, count in (
            ("news", arguments.news_events),
            ("sensors", arguments.sensor_events),
        ):
            name = f"{domain}-{guarantee}-{interval_ms}ms"
            phases.append(await run_phase(base, name, domain, count, None, overrides, scratch))
            _done(phases[-1])
    return phases


async def sensor_phases(count: int, base: Settings, scratch: Path) -> list[Phase]:
    """Sensors end to end with the producer beside the worker, then from a backlog."""
    phases = []
    for name, backlog in (("sensors-batched", False), ("sensors-backlog", True)):
        phases.append(
            await run_phase(base, name, "sensors", count, None, {}, scratch, backlog=backlog)
        )
        _done(phases[-1])
    return phases


async def bench(arguments: argparse.Namespace, scratch: Path) -> tuple[float, list[Phase]]:
    base = load_settings(
        **({"registry_dir": arguments.registry} if arguments.registry else {}),
        home=scratch / "home",
    )
    ensure_models(base, ("news", "sensors"))
    if arguments.sensors_only:
        return 0.0, await sensor_phases(arguments.sensor_events, base, scratch)
    threads = {"SIGNALYARD_PIPELINE__TORCH_THREADS": str(arguments.torch_threads)}
    pipeline = base.pipeline.model_copy(update={"torch_threads": arguments.torch_threads})
    ceiling = model_ceiling(base.model_copy(update={"pipeline": pipeline}), arguments.news_events)
    console.print(
        f"news model only: {ceiling:.1f} texts/s (torch threads {torch.get_num_threads()})"
    )
    news = arguments.news_events
    if arguments.explanations_only:
        return ceiling, await explanation_phases(base, news, threads, scratch)
    if arguments.guarantees_only:
        return ceiling, await guarantee_phases(base, arguments, threads, scratch)
    phases = [await run_phase(base, "news-batched", "news", news, None, threads, scratch)]
    _done(phases[-1])
    naive = {
        **threads,
        "SIGNALYARD_BATCHING__MAX_BATCH_SIZE": "1",
        "SIGNALYARD_PIPELINE__MAX_BATCHES_IN_FLIGHT": "1",
        # Nothing to group one event's row with: insert it at once instead of waiting.
        "SIGNALYARD_SINK__MAX_DELAY_MS": "0",
    }
    phases.append(await run_phase(base, "news-naive", "news", news // 3, None, naive, scratch))
    _done(phases[-1])
    half = phases[0].events_per_s / 2
    paced = max(1, int(half * arguments.latency_seconds))
    phases.append(await run_phase(base, "news-half-load", "news", paced, half, threads, scratch))
    _done(phases[-1])
    phases += await sensor_phases(arguments.sensor_events, base, scratch)
    if arguments.explanations:
        phases += await explanation_phases(base, news, threads, scratch)
    return ceiling, phases


def _done(phase: Phase) -> None:
    console.print(f"{phase.name}: {phase.events_per_s:.1f} events/s over {phase.seconds:.1f}s")


def report(ceiling: float, phases: list[Phase]) -> Table:
    table = Table(title="Signalyard pipeline benchmark", title_justify="left")
    for column in (
        "phase",
        "events",
        "seconds",
        "events/s",
        "vs model",
        "p50 ms",
        "p99 ms",
        "seen p50",
        "seen p99",
        "stored",
        "alerts (explained)",
    ):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in phases:
        ratio = f"{phase.events_per_s / ceiling:.0%}" if ceiling and phase.domain == "news" else "-"
        table.add_row(
            phase.name,
            str(phase.events),
            f"{phase.seconds:.1f}",
            f"{phase.events_per_s:.1f}",
            ratio,
            "-" if phase.p50_ms is None else f"{phase.p50_ms:.0f}",
            "-" if phase.p99_ms is None else f"{phase.p99_ms:.0f}",
            "-" if phase.seen_p50_ms is None else f"{phase.seen_p50_ms:.0f}",
            "-" if phase.seen_p99_ms is None else f"{phase.seen_p99_ms:.0f}",
            str(phase.stored),
            "-" if phase.alerts is None else f"{phase.alerts} ({phase.explained})",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--news-events", type=int, default=1500)
    parser.add_argument("--sensor-events", type=int, default=30_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: one per core")
    parser.add_argument("--registry", type=Path, default=None, help="default: a scratch one")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: benchmarks/results/pipeline[_MODE].json"
    )
    add_note_option(parser)
    explaining = parser.add_mutually_exclusive_group()
    explaining.add_argument(
        "--explanations",
        action="store_true",
        help="also: news with alerts firing, without and with their events explained",
    )
    explaining.add_argument(
        "--explanations-only", action="store_true", help="only the two phases of --explanations"
    )
    explaining.add_argument(
        "--guarantees-only",
        action="store_true",
        help="only news and sensors under at_least_once and exactly_once",
    )
    explaining.add_argument(
        "--sensors-only",
        action="store_true",
        help="only sensors, with the producer beside the worker and from a backlog",
    )
    parser.add_argument(
        "--intervals-ms",
        default="100,1000",
        help="exactly_once transaction intervals to measure (comma-separated)",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="signalyard-bench-") as scratch:
        ceiling, phases = asyncio.run(bench(arguments, Path(scratch)))
    console.print(report(ceiling, phases))
    lost = [phase.name for phase in phases if phase.stored != phase.events]
    if lost:
        raise SystemExit(f"ClickHouse does not hold every event once in: {', '.join(lost)}")
    name, title = (
        ("pipeline_explanations", "The pipeline with alerts explained")
        if arguments.explanations_only
        else ("pipeline_guarantees", "Processing guarantees: what exactly once costs")
        if arguments.guarantees_only
        else ("pipeline_sensors", "Sensors through one worker")
        if arguments.sensors_only
        else ("pipeline", "The pipeline end to end")
    )
    record(
        name,
        title,
        {"news_model_texts_per_s": ceiling or None, "phases": [asdict(p) for p in phases]},
        out=arguments.out,
        tables=[phase_table(phases)],
        notes=arguments.note,
    )


def phase_table(phases: list[Phase]) -> dict[str, Any]:
    """The phases as a results table (``recording``)."""
    columns = ["phase", "events", "s", "events/s", "p50 ms", "p99 ms", "seen p50 ms", "seen p99 ms"]
    rows = [
        [
            p.name,
            p.events,
            round(p.seconds, 1),
            round(p.events_per_s, 1),
            *(None if v is None else round(v) for v in (p.p50_ms, p.p99_ms)),
            *(None if v is None else round(v) for v in (p.seen_p50_ms, p.seen_p99_ms)),
        ]
        for p in phases
    ]
    if any(p.alerts is not None for p in phases):
        columns.append("alerts (explained)")
        for row, p in zip(rows, phases, strict=True):
            row.append("-" if p.alerts is None else f"{p.alerts} ({p.explained})")
    return {"title": "", "columns": columns, "rows": rows}


if __name__ == "__main__":
    main()
