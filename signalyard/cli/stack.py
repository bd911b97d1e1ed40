"""``signalyard stack up | down | status``: the local single-node Kafka broker."""

from __future__ import annotations

import time

import click
from rich.console import Console

from config.settings import load_settings
from signalyard.local import local_kafka

console = Console(stderr=True, soft_wrap=True)


@click.group()
def stack() -> None:
    """Run a local single-node Apache Kafka (KRaft) on 127.0.0.1."""


@stack.command()
def up() -> None:
    """Start the broker (fetching its jars on first use) and wait until it answers."""
    settings = load_settings()
    started = time.monotonic()
    with console.status("starting Kafka (the first start fetches its jars through Maven)"):
        state = local_kafka.up(settings.home_dir, settings.stack)
    console.print(
        f"Kafka {settings.stack.kafka_version} is up on {state.address} "
        f"(pid {state.pid}, {time.monotonic() - started:.1f}s); log: {state.log}"
    )


@stack.command()
def down() -> None:
    """Stop the broker that ``stack up`` started."""
    settings = load_settings()
    stopped = local_kafka.down(settings.home_dir, settings.stack)
    console.print(
        "Kafka stopped" if stopped else "Kafka was not running (none started by signalyard)"
    )


@stack.command()
def status() -> None:
    """Say whether the broker is up, and where its log is. Exits 1 when it is down."""
    settings = load_settings()
    state = local_kafka.status(settings.home_dir, settings.stack)
    if state.running and state.answering:
        console.print(f"Kafka is up on {state.address} (pid {state.pid}); log: {state.log}")
        return
    if state.answering:
        console.print(f"something not started by signalyard answers on {state.address}")
    else:
        console.print(f"Kafka is down; log: {state.log}")
    raise click.exceptions.Exit(1)
