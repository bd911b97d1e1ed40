"""``signalyard init``: topics and tables."""

from __future__ import annotations

import asyncio

import click
from rich.console import Console
from rich.table import Table

from config.settings import Settings, load_settings
from store.connection import connect
from store.schema import create_tables
from streams.topics import project_topics, provision_topics

console = Console()


def provision(settings: Settings) -> None:
    """Create every topic and table the system reads or writes; safe to run again."""
    from streams.alerting.consumer import state_changelogs  # aiokafka: only when provisioning

    topics = project_topics(settings) + state_changelogs(settings)
    states = asyncio.run(provision_topics(settings.kafka, topics))
    table = Table("topic", "partitions", "action", title="Kafka topics")
    for state in states:
        table.add_row(state.name, str(state.partitions), state.action)
    console.print(table)
    client = connect(settings.clickhouse_dsn)
    try:
        tables = create_tables(client)
    finally:
        client.close()
    console.print(f"ClickHouse tables ready: {', '.join(tables)}")


@click.command()
def init() -> None:
    """Provision every Kafka topic and ClickHouse table (idempotent)."""
    provision(load_settings())
