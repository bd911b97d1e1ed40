"""``signalyard demo``: the whole pipeline on one machine, from nothing, with a live summary.

It starts the local broker, provisions topics and tables, makes sure each domain has a live
model (training a small one from the synthetic world when the registry has none), runs a
``signalyard worker`` process, feeds the three raw topics from the synthetic world (a small
fraction of the events malformed on purpose) and shows what comes out of the scored and
dead-letter topics until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import asyncio
import signal

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from signalyard.cli.provision import provision
from signalyard.settings import DOMAINS, Settings, load_settings
from signalyard.stack import local_kafka
from streams.groups import wait_until_stable
from streams.monitor import LiveStats, Summary, watch
from streams.producer import produce
from streams.synthetic import World, events
from streams.worker_process import WorkerProcess

console = Console()
WORKER_START_TIMEOUT_S = 180
REFRESH_S = 1.0


class WorkerExited(click.ClickException):
    """The worker stopped on its own; its log says why."""


@click.command()
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
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the synthetic world.")
def demo(duration: float | None, rate: float, malformed: float, seed: int) -> None:
    """Run the whole pipeline locally on synthetic news, tickets and sensor readings."""
    from streams.bootstrap import ensure_models  # loads torch: only when the demo runs

    settings = load_settings()
    with console.status("starting Kafka"):
        state = local_kafka.up(settings.home_dir, settings.stack)
    console.print(f"Kafka is up on {state.address}")
    provision(settings)
    with console.status("checking the model registry") as status:
        live = ensure_models(
            settings,
            DOMAINS,
            on_training=lambda domain: status.update(
                f"training a small {domain} model from synthetic data (first run only)"
            ),
        )
    console.print("live models: " + ", ".join(f"{d} {v}" for d, v in live.items()))
    log = settings.home_dir / "demo-worker.log"
    worker = WorkerProcess(settings, log, ("worker", "--loglevel", "info")).start()
    try:
        asyncio.run(_run(settings, worker, duration, rate, malformed, seed))
    finally:
        with console.status("stopping the worker"):
            worker.stop()
    console.print(f"worker log: {log}")


async def _run(
    settings: Settings,
    worker: WorkerProcess,
    duration: float | None,
    rate: float,
    malformed: float,
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
            _check(worker)
            await asyncio.sleep(0.5)
        if stop.is_set():
            started.cancel()
            return
        if not started.result():
            raise WorkerExited(f"the worker did not join group {group} in time; see {worker.log}")
    stats = LiveStats()
    ready = asyncio.Event()
    world = World(seed=seed)
    tasks = [asyncio.create_task(watch(settings, stats, ready))]
    await ready.wait()
    tasks += [
        asyncio.create_task(
            produce(
                settings.kafka,
                settings.topics.raw(domain).name,
                events(world, domain, malformed),
                rate,
                stop,
            )
        )
        for domain in DOMAINS
    ]
    began = loop.time()
    try:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            while not stop.is_set() and (duration is None or loop.time() - began < duration):
                _check(worker)
                for task in tasks:
                    if task.done():
                        task.result()  # a feeder or the watcher failed: raise its error
                live.update(render(stats.summary(loop.time()), loop.time() - began))
                await asyncio.sleep(REFRESH_S)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    console.print(render(stats.summary(loop.time()), loop.time() - began))


def render(summary: Summary, elapsed_s: float) -> Group:
    """The live summary: per domain rate, latency and labels; dead letters by kind."""
    table = Table(title=f"Signalyard demo, {elapsed_s:.0f}s", title_justify="left")
    for column in ("domain", "scored", "events/s", "p50 ms", "p99 ms", "labels"):
        table.add_column(column, justify="left" if column in ("domain", "labels") else "right")
    for domain, figures in summary.domains.items():
        table.add_row(
            domain,
            str(figures.scored),
            f"{figures.per_second:.1f}",
            _ms(figures.p50_ms),
            _ms(figures.p99_ms),
            ", ".join(f"{label} {count}" for label, count in figures.labels.items()),
        )
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary.dead_reasons)
    dead = Text(f"dead-lettered: {summary.dead_letters}" + (f" ({kinds})" if kinds else ""))
    return Group(table, dead)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _check(worker: WorkerProcess) -> None:
    if not worker.running:
        raise WorkerExited(f"the worker stopped on its own; see {worker.log}")
