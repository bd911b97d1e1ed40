"""The live news rate while ``signalyard replay`` backtests 10,000 events beside the worker.

The worker holds the embedded store, so the replay writes through the worker's web port
(``store.backtest_runs``) and runs at low CPU priority. One run:

1. produces ``--replay-events`` news events (the backlog to replay) and commits the worker's
   group past them, as if the worker had scored them long ago;
2. starts one ``signalyard worker --domain news`` with a web port and feeds it fresh news at
   ``--rate`` events/s for the whole run;
3. measures the live results (events/s arriving on the scored topic, p50 and p99 of their
   ``latency_ms``) over ``--baseline-seconds`` before the replay, then during the replay of the
   backlog (a ``signalyard replay`` process), and reports the replay's own rate.

The broker must be up (``signalyard stack up``); models are trained from the synthetic world
when the registry at ``--registry`` has none.

    .venv/bin/python benchmarks/bench_replay_live.py [--replay-events 10000] [--rate 40]
        [--baseline-seconds 30] [--registry DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from recording import dict_table, record
from rich.console import Console
from rich.table import Table

from config.settings import Settings, load_settings, settings_environment, with_topic_suffix
from signalyard.demo.bootstrap import ensure_models
from signalyard.demo.monitor import percentile
from signalyard.demo.synthetic import World, events
from signalyard.local.worker_process import WorkerProcess
from streams.connection import consumer_options
from streams.groups import wait_until_stable
from streams.producer import produce
from streams.topics import project_topics, provision_topics

console = Console(width=110)
WORKER_READY_TIMEOUT_S = 240


@dataclass(frozen=True)
class Window:
    name: str
    seconds: float
    live_events: int
    live_per_s: float
    p50_ms: float | None
    p99_ms: float | None


class LiveResults:
    """(arrival time, latency ms) of every live result on the scored topic."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, float]] = []

    async def read(self, settings: Settings, positioned: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            settings.topics.news_scored.name,
            **consumer_options(settings.kafka),
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await asyncio.sleep(0.05)
            await consumer.seek_to_end()
            positioned.set()
            while True:
                fetched = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in fetched.values():
                    for message in records:
                        latency = float(json.loads(message.value)["latency_ms"])
                        self.arrivals.append((now, latency))
        finally:
            await consumer.stop()

    def window(self, name: str, start: float, end: float) -> Window:
        latencies = [latency for at, latency in self.arrivals if start <= at < end]
        seconds = end - start
        return Window(
            name,
            seconds,
            len(latencies),
            len(latencies) / seconds,
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
        )


async def commit_to_end(settings: Settings, group: str) -> None:
    """Commit ``group`` at the end of the news raw topic: the backlog counts as scored."""
    consumer = AIOKafkaConsumer(
        settings.topics.news_raw.name,
        **consumer_options(settings.kafka),
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while len(consumer.assignment()) < settings.topics.news_raw.partitions:
            await consumer.getmany(timeout_ms=200)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        await consumer.commit(ends)
    finally:
        await consumer.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def bench(arguments: argparse.Namespace, scratch: Path) -> tuple[list[Window], float]:
    base = load_settings(
        **({"registry_dir": arguments.registry} if arguments.registry else {}),
        home=scratch / "home",
    )
    ensure_models(base, ("news",))
    settings = with_topic_suffix(base, uuid.uuid4().hex[:8])
    settings = settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"web_port": free_port()})}
    )
    await provision_topics(settings.kafka, project_topics(settings))
    topic = settings.topics.news_raw.name
    start_ms = time.time_ns() // 1_000_000 - 1
    await produce(
        settings.kafka, topic, islice(events(World(seed=3), "news"), arguments.replay_events)
    )
    end_ms = time.time_ns() // 1_000_000 + 1
    await commit_to_end(settings, settings.pipeline.scoring_group)
    console.print(f"backlog: {arguments.replay_events} news events, committed as scored")

    worker = WorkerProcess(
        settings,
        scratch / "worker.log",
        overrides={"SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "false"},
    ).start("--domain", "news")
    stop = asyncio.Event()
    live = LiveResults()
    tasks: list[asyncio.Task] = []
    try:
        group = settings.pipeline.scoring_group
        if not await wait_until_stable(settings.kafka, group, 1, WORKER_READY_TIMEOUT_S):
            raise RuntimeError(f"the worker did not start; see {worker.log}")
        positioned = asyncio.Event()
        tasks.append(asyncio.create_task(live.read(settings, positioned)))
        await positioned.wait()
        # A fresh world (another seed): live events never share ids with the backlog.
        feed = events(World(seed=11), "news")
        tasks.append(
            asyncio.create_task(produce(settings.kafka, topic, feed, arguments.rate, stop))
        )
        await asyncio.sleep(arguments.warmup_seconds)
        before_start = time.monotonic()
        await asyncio.sleep(arguments.baseline_seconds)
        replay_start = time.monotonic()
        environment = settings_environment(settings) | {
            "SIGNALYARD_REGISTRY_DIR": str(settings.models_dir)
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "signalyard",
            "replay",
            "news",
            "--from",
            str(start_ms),
            "--to",
            str(end_ms),
            "--run-id",
            "bench-replay",
            env={**_inherited(), **environment},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        replay_end = time.monotonic()
        if process.returncode != 0:
            raise RuntimeError(f"the replay failed: {err.decode()[-2000:]}")
        console.print(err.decode().strip().splitlines()[-1])
        await asyncio.sleep(2)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        status = worker.stop()
    if status != 0:
        raise RuntimeError(f"the worker exited with {status}; see {worker.log}")
    windows = [
        live.window("live, before the replay", before_start, replay_start),
        live.window("live, during the replay", replay_start, replay_end),
    ]
    return windows, arguments.replay_events / (replay_end - replay_start)


def _inherited() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGNALYARD_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replay-events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=40.0, help="live news events/s")
    parser.add_argument("--warmup-seconds", type=float, default=10.0)
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    parser.add_argument("--registry", type=Path, default=None, help="default: a scratch one")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/replay_live.json")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="signalyard-bench-") as scratch:
        windows, replay_rate = asyncio.run(bench(arguments, Path(scratch)))
    table = Table(title=f"live news at {arguments.rate:g} events/s offered", title_justify="left")
    for column in ("window", "seconds", "live events", "live events/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "window" else "right")
    for window in windows:
        table.add_row(
            window.name,
            f"{window.seconds:.1f}",
            str(window.live_events),
            f"{window.live_per_s:.1f}",
            "-" if window.p50_ms is None else f"{window.p50_ms:.0f}",
            "-" if window.p99_ms is None else f"{window.p99_ms:.0f}",
        )
    console.print(table)
    console.print(f"replay: {arguments.replay_events} events at {replay_rate:.1f} events/s")
    record(
        "replay_live",
        "A replay beside a live worker",
        {"windows": [asdict(w) for w in windows], "replay_events_per_s": replay_rate},
        out=arguments.out,
        tables=[dict_table([asdict(w) for w in windows])],
        notes=[
            f"Live news offered at {arguments.rate:g} events/s; the replay of "
            f"{arguments.replay_events:,} events ran at {replay_rate:.1f} events/s."
        ],
    )


if __name__ == "__main__":
    main()
