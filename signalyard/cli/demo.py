"""``signalyard demo``: the whole pipeline on one machine, from nothing, with a live summary.

It starts the local broker (unless one answers at the configured address already), provisions
topics and tables, makes sure each domain has a live model, runs a ``signalyard worker`` and a
``signalyard trainer``, feeds the three raw topics and shows what comes out until Ctrl-C or
``--duration``:

* without ``--data``, the synthetic world (``signalyard.demo.synthetic``), with models trained
  from it when the registry has none;
* with ``--data DIR`` (the layout of ../shared/data), held-out rows of the real sets there
  (``signalyard.demo.feed``), with a quick model per domain trained on the other rows where the
  registry has none (or only one from the synthetic world); domains without data stay
  synthetic.

Every fed event's true label is known, so the summary shows accuracy as results arrive, and a
share of the labels (``--feedback``) is published on ``feedback.labels`` as an analyst would,
once the event is scored: the adaptation loop then runs on its own (a trigger after
``--retrain-after`` labels, a candidate, the gate's decision, a swap), shown as it happens.
A small fraction of the events is malformed on purpose, to show the dead-letter topic at work.
"""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import click
from aiokafka import AIOKafkaProducer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import domains
from config.settings import DomainName, Settings, load_settings
from models.errors import DataError
from models.registry import Registry
from signalyard.cli.provision import provision
from signalyard.demo.feed import DomainData, Fed, data_feed, prepare, synthetic_feed
from signalyard.demo.monitor import LiveStats, Summary, watch
from signalyard.demo.synthetic import World
from signalyard.local import local_kafka
from signalyard.local.local_kafka import port_answers
from signalyard.local.worker_process import WorkerProcess
from streams.adaptation.messages import FeedbackLabel
from streams.connection import aiokafka_options
from streams.groups import wait_until_stable
from streams.producer import produce

console = Console()
WORKER_START_TIMEOUT_S = 180
REFRESH_S = 1.0
LINES_EVERY_S = 5.0  # between the summary lines printed when no terminal shows the table
DEMO_WEB_PORT = 6066  # Faust's own default; another free port when it is taken
LABELER = "demo-analyst"


class WorkerExited(click.ClickException):
    """The worker or the trainer stopped on its own; its log says why."""


@click.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Labeled sets in the layout of ../shared/data (fpb, tweets, banking77, ai4i): "
    "stream their held-out rows instead of the synthetic world.",
)
@click.option(
    "--feedback",
    type=click.FloatRange(min=0, max=1),
    default=0.2,
    show_default=True,
    help="Share of the scored events whose true label is published as analyst feedback.",
)
@click.option(
    "--retrain-after",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="New labels of a domain that trigger a retraining round.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to run; default: until Ctrl-C.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=25.0,
    show_default=True,
    help="Events per second fed to each domain's raw topic.",
)
@click.option(
    "--malformed",
    type=click.FloatRange(min=0, max=1),
    default=0.02,
    show_default=True,
    help="Fraction of the fed events that are broken on purpose (they are dead-lettered).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the feeds.")
def demo(
    data_dir: Path | None,
    feedback: float,
    retrain_after: int,
    duration: float | None,
    rate: float,
    malformed: float,
    seed: int,
) -> None:
    """Run the whole pipeline locally on synthetic or real news, tickets and sensor readings."""
    from signalyard.demo.bootstrap import ensure_models  # loads torch: only when the demo runs

    settings = demo_settings(load_settings(), retrain_after)
    try:
        data = prepare(data_dir, settings.home_dir / "demo", seed) if data_dir else {}
    except DataError as error:
        raise click.ClickException(str(error)) from None
    for domain in domains.names():
        if domain in data:
            rows = len(data[domain].stream)
            sets = ", ".join(data[domain].sets)
            console.print(f"{domain}: streaming {rows} held-out rows of {sets}")
        else:
            console.print(f"{domain}: streaming the synthetic world")
    host, _, kafka_port = settings.kafka.bootstrap_list[0].rpartition(":")
    if port_answers(int(kafka_port), host):
        console.print(f"Kafka answers on {host}:{kafka_port}")
    else:
        with console.status("starting Kafka"):
            state = local_kafka.up(settings.home_dir, settings.stack)
        console.print(f"Kafka is up on {state.address}")
    provision(settings)
    with console.status("checking the model registry") as status:
        live = ensure_models(
            settings,
            domains.names(),
            on_training=lambda domain, source: status.update(
                f"training a quick {domain} model on {source}"
            ),
            data=data,
        )
    console.print("live models: " + ", ".join(f"{d} {v}" for d, v in live.items()))
    port = settings.pipeline.web_port
    console.print(
        f"dashboard: http://127.0.0.1:{port}/dashboard; from another terminal, "
        f"SIGNALYARD_PIPELINE__WEB_PORT={port} lets signalyard sql, replay and backtest "
        "go through the worker"
    )
    logs = settings.home_dir
    worker = WorkerProcess(settings, logs / "demo-worker.log", ("worker", "--loglevel", "info"))
    trainer = WorkerProcess(settings, logs / "demo-trainer.log", ("trainer", "--loglevel", "info"))
    processes = [worker.start()] + ([trainer.start()] if feedback > 0 else [])
    try:
        feeds = _feeds(data, seed, malformed)
        asyncio.run(_run(settings, processes, feeds, feedback, duration, rate, seed))
    finally:
        with console.status("stopping the worker"):
            for process in processes:
                process.stop()
    console.print(f"logs: {worker.log}" + (f", {trainer.log}" if feedback > 0 else ""))


def demo_settings(settings: Settings, retrain_after: int) -> Settings:
    """The settings with a web port for the worker (the trainer and other commands reach the
    embedded store through it), the demo's retrain threshold, and rounds that adapt the head
    alone, as the demo's models were trained: a round takes seconds, so a demo of a few
    minutes shows the whole loop."""
    port = settings.pipeline.web_port or _free_port(DEMO_WEB_PORT)
    adaptation = {"min_new_labels": retrain_after, "mode": "head"}
    return settings.model_copy(
        update={
            "pipeline": settings.pipeline.model_copy(update={"web_port": port}),
            "adaptation": settings.adaptation.model_copy(update=adaptation),
        }
    )


def _free_port(preferred: int) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _feeds(
    data: dict[DomainName, DomainData], seed: int, malformed: float
) -> dict[DomainName, Iterator[Fed]]:
    # Event ids of this demo run: rows streamed again, and the world's events drawn again by a
    # later run of the same seed, are new events.
    run = uuid.uuid4().hex[:8]
    world = World(seed=seed, run=run)
    rng = random.Random(seed)
    return {
        domain: (
            data_feed(domain, data[domain].stream, run, rng, malformed)
            if domain in data
            else synthetic_feed(world, domain, malformed)
        )
        for domain in domains.names()
    }


async def _run(
    settings: Settings,
    processes: list[WorkerProcess],
    feeds: dict[DomainName, Iterator[Fed]],
    feedback: float,
    duration: float | None,
    rate: float,
    seed: int,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with console.status("starting the worker (loading the models)"):
        group = settings.pipeline.scoring_group
        started = asyncio.create_task(
            wait_until_stable(settings.kafka, group, members=1, timeout_s=WORKER_START_TIMEOUT_S)
        )
        while not started.done() and not stop.is_set():
            _check(processes)
            await asyncio.sleep(0.5)
        if stop.is_set():
            started.cancel()
            return
        if not started.result():
            raise WorkerExited(
                f"the worker did not join group {group} in time; see {processes[0].log}"
            )
    truth: dict[str, str] = {}
    to_label: dict[str, str] = {}
    picker = random.Random(seed)
    stats = LiveStats(truth=truth)
    producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all")
    await producer.start()

    def records(feed: Iterator[Fed]) -> Iterator[tuple[bytes, bytes]]:
        for fed in feed:
            if fed.event_id is not None and fed.truth is not None:
                truth[fed.event_id] = fed.truth
                if picker.random() < feedback:
                    to_label[fed.event_id] = fed.truth
            yield fed.key, fed.value

    async def label(domain: DomainName, result: dict) -> None:
        # An analyst labels what the pipeline scored: the label follows its result.
        event_id = str(result["event_id"])
        truth_label = to_label.pop(event_id, None)
        if truth_label is not None:
            message = FeedbackLabel(event_id=event_id, domain=domain, label=truth_label,
                                    labeler=LABELER, ts=datetime.now(UTC))  # fmt: skip
            await producer.send(
                settings.topics.feedback_labels.name,
                message.model_dump_json().encode(),
                key=event_id.encode(),
            )

    ready = asyncio.Event()
    tasks = [asyncio.create_task(watch(settings, stats, ready, label))]
    await ready.wait()
    tasks += [
        asyncio.create_task(
            produce(settings.kafka, settings.topics.raw(domain).name, records(feed), rate, stop)
        )
        for domain, feed in feeds.items()
    ]
    candidates = CandidateWatch(Registry(settings.models_dir))
    began = loop.time()
    # The live table needs a terminal; without one (a log file, a pipe) a line per domain now
    # and then says the same.
    interactive = console.is_terminal
    next_lines = began + LINES_EVERY_S
    table = Live(console=console, refresh_per_second=4, transient=True)
    try:
        with table if interactive else nullcontext() as live:
            while not stop.is_set() and (duration is None or loop.time() - began < duration):
                _check(processes)
                for task in tasks:
                    if task.done():
                        task.result()  # a feeder or the watcher failed: raise its error
                for line in candidates.new_decisions():
                    stats.adaptation(line)
                    if not interactive:
                        console.print(f"adaptation: {line}", highlight=False, soft_wrap=True)
                summary, elapsed = stats.summary(loop.time()), loop.time() - began
                if live is not None:
                    live.update(render(summary, elapsed))
                elif loop.time() >= next_lines:
                    for line in summary_lines(summary, elapsed):
                        console.print(line, highlight=False, soft_wrap=True)
                    next_lines += LINES_EVERY_S
                await asyncio.sleep(REFRESH_S)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()
    console.print(render(stats.summary(loop.time()), loop.time() - began))


class CandidateWatch:
    """The gate's decisions on candidates registered since the demo began (their metadata)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.seen = {domain: set(registry.version_ids(domain)) for domain in domains.names()}

    def new_decisions(self) -> list[str]:
        lines = []
        for domain in domains.names():
            for version in self.registry.version_ids(domain):
                if version in self.seen[domain]:
                    continue
                self.seen[domain].add(version)  # a version folder appears whole
                gate = self.registry.metadata(domain, version).get("adaptation", {}).get("gate")
                if gate is not None:  # its reason starts with the verdict
                    lines.append(f"{domain}: candidate {version}, {gate['reason']}")
        return lines


def render(summary: Summary, elapsed_s: float) -> Group:
    """The live summary: per domain rate, latency, labels and accuracy against the truth;
    dead letters by kind; the latest steps of the adaptation loop."""
    table = Table(title=f"Signalyard demo, {elapsed_s:.0f}s", title_justify="left")
    columns = ("domain", "scored", "events/s", "p50 ms", "p99 ms", "accuracy", "labels")
    for column in columns:
        table.add_column(column, justify="left" if column in ("domain", "labels") else "right")
    for domain, figures in summary.domains.items():
        table.add_row(
            domain,
            str(figures.scored),
            f"{figures.per_second:.1f}",
            _ms(figures.p50_ms),
            _ms(figures.p99_ms),
            "-" if figures.accuracy is None else f"{figures.accuracy:.3f}",
            ", ".join(f"{label} {count}" for label, count in figures.labels.items()),
        )
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.dead_reasons)
    lines = [Text(f"dead-lettered: {summary.dead_letters}" + (f" ({kinds})" if kinds else ""))]
    lines += [Text(f"adaptation: {line}") for line in summary.adaptation]
    return Group(table, *lines)


def summary_lines(summary: Summary, elapsed_s: float) -> list[str]:
    """The live table as one line per domain, then the dead letters: for a log file."""
    lines = [
        f"[{elapsed_s:4.0f}s] {domain}: {figures.scored} scored, {figures.per_second:.1f}/s, "
        f"p50 {_ms(figures.p50_ms)} ms, p99 {_ms(figures.p99_ms)} ms, accuracy "
        + ("-" if figures.accuracy is None else f"{figures.accuracy:.3f}")
        for domain, figures in summary.domains.items()
    ]
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.dead_reasons)
    return [*lines, f"[{elapsed_s:4.0f}s] dead-lettered: {summary.dead_letters}"
            + (f" ({kinds})" if kinds else "")]  # fmt: skip


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _check(processes: list[WorkerProcess]) -> None:
    for process in processes:
        if not process.running:
            raise WorkerExited(f"{process.args[0]} stopped on its own; see {process.log}")
