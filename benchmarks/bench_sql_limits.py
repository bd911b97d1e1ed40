"""Live scoring while a huge read-only query hits the worker's SQL endpoint (embedded store).

One worker scores sensor readings with ``pipeline.web_port`` on. Phase one produces readings
and times them to the scored topic; phase two does the same while another thread sends
``SELECT number, toString(number) FROM numbers(30000000)`` to ``/sql`` over and over (before
``[queries]`` limits, one such query took 94 s, grew the worker from 1.5 GB to 13 GB and slowed
scoring fivefold). Printed: each phase's events/s, the worker's resident memory at the start
and at its peak, and how the queries ended. The broker must be up (``signalyard stack up``).

    .venv/bin/python benchmarks/bench_sql_limits.py [--events 20000] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from itertools import islice
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from recording import record

from config.settings import Settings, load_settings, with_topic_suffix
from signalyard.demo.bootstrap import ensure_models
from signalyard.demo.synthetic import World, events
from signalyard.local.worker_process import WorkerProcess
from store.web_token import credentials
from streams.connection import consumer_options
from streams.groups import wait_until_stable
from streams.producer import produce
from streams.topics import project_topics, provision_topics

HUGE = "SELECT number, toString(number) FROM numbers(30000000)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Hammer(threading.Thread):
    """Sends the huge query to ``/sql`` until stopped; keeps each answer's time and error."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.headers = headers  # the worker's credential (store.web_token)
        self.stopped = threading.Event()
        self.answers: list[tuple[float, str]] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/sql",
                data=HUGE.encode(),
                method="POST",
                headers=self.headers,
            )
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    answer = f"{len(json.load(response)['rows'])} rows"
            except urllib.error.HTTPError as error:
                answer = json.load(error).get("error", str(error))
            self.answers.append((time.monotonic() - started, answer))


async def results_from_now(settings: Settings, count: int, positioned: asyncio.Event) -> float:
    """When (loop time) ``count`` new results have reached the sensors scored topic."""
    topic = settings.topics.sensors_scored
    partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer = AIOKafkaConsumer(**consumer_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)
        positioned.set()
        seen = 0
        while seen < count:
            fetched = await consumer.getmany(timeout_ms=200, max_records=10_000)
            seen += sum(len(records) for records in fetched.values())
        return asyncio.get_running_loop().time()
    finally:
        await consumer.stop()


async def phase(
    settings: Settings, pid: int, seed: int, count: int, hammer: Hammer | None
) -> tuple[float, float]:
    """Events/s of ``count`` readings to the scored topic, and the worker's peak RSS (MB)."""
    positioned = asyncio.Event()
    reader = asyncio.create_task(results_from_now(settings, count, positioned))
    await positioned.wait()
    peak = resident_mb(pid)
    if hammer is not None:
        hammer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    records = islice(events(World(seed=seed), "sensors"), count)
    producing = asyncio.create_task(
        produce(settings.kafka, settings.topics.sensors_raw.name, records, None)
    )
    while not reader.done():
        peak = max(peak, resident_mb(pid))
        await asyncio.sleep(0.2)
    await producing
    finished = await reader
    if hammer is not None:
        hammer.stopped.set()
        hammer.join(timeout=300)
    return count / (finished - started), peak


async def bench(arguments: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    base = load_settings(home=scratch / "home")
    ensure_models(base, ("sensors",))
    run = uuid.uuid4().hex[:8]
    settings = with_topic_suffix(
        load_settings(home=scratch / "live", registry_dir=base.models_dir), run
    )
    await provision_topics(settings.kafka, project_topics(settings))
    port, app_id = free_port(), f"bench-sql-{run}"
    worker_settings = settings.model_copy(
        update={"pipeline": settings.pipeline.model_copy(update={"web_port": port})}
    )
    worker = WorkerProcess(
        settings,
        scratch / "worker.log",
        overrides={
            "SIGNALYARD_PIPELINE__APP_ID": app_id,
            "SIGNALYARD_PIPELINE__WEB_PORT": str(port),
            "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "false",
        },
    ).start("--domain", "sensors")
    try:
        group = settings.pipeline.model_copy(update={"app_id": app_id}).scoring_group
        if not await wait_until_stable(settings.kafka, group, 1, 240):
            raise RuntimeError(f"the worker did not start; see {worker.log}")
        assert worker.process is not None
        pid = worker.process.pid
        await phase(settings, pid, 1, 2000, None)  # warm-up
        start_mb = resident_mb(pid)
        quiet, quiet_peak = await phase(settings, pid, 2, arguments.events, None)
        hammer = Hammer(port, credentials(worker_settings))
        busy, busy_peak = await phase(settings, pid, 3, arguments.events, hammer)
    finally:
        worker.stop()
    figures = {
        "events": arguments.events,
        "start_mb": start_mb,
        "quiet_events_per_s": quiet,
        "quiet_peak_mb": quiet_peak,
        "busy_events_per_s": busy,
        "busy_peak_mb": busy_peak,
        "queries": [{"seconds": s, "answer": a} for s, a in hammer.answers],
    }
    print(f"worker resident memory after warm-up: {start_mb:,.0f} MB")
    print(f"scoring alone:          {quiet:8,.0f} events/s, peak {quiet_peak:,.0f} MB")
    print(f"with the huge query:    {busy:8,.0f} events/s, peak {busy_peak:,.0f} MB")
    seconds = [s for s, _ in hammer.answers]
    print(
        f"queries sent meanwhile: {len(hammer.answers)}, each answered in "
        f"{min(seconds):.2f}-{max(seconds):.2f} s; the answer: {hammer.answers[0][1]}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/sql_limits.json")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="signalyard-bench-sql-") as scratch:
        figures = asyncio.run(bench(arguments, Path(scratch)))
    record(
        "sql_limits",
        "Live scoring while a huge query hits the SQL endpoint",
        figures,
        out=arguments.out,
        tables=[
            {
                "title": "",
                "columns": ["phase", "events/s", "peak RSS MB"],
                "rows": [
                    ["scoring alone", figures["quiet_events_per_s"], figures["quiet_peak_mb"]],
                    ["with the huge query", figures["busy_events_per_s"], figures["busy_peak_mb"]],
                ],
            }
        ],
        notes=[
            f"{arguments.events:,} sensor readings per phase; {len(figures['queries'])} queries "
            f"sent meanwhile, the first answered: {figures['queries'][0]['answer']}."
        ],
    )


if __name__ == "__main__":
    main()
