"""``signalyard worker`` (score the raw topics) and ``signalyard produce`` (send events)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

import domains
from config.settings import DomainName, load_settings
from signalyard.cli.provision import provision
from streams.connection import wait_for_broker
from streams.producer import file_format, produce, read_records
from streams.topics import provision_topics


@click.command()
@click.option(
    "--domain",
    "chosen",
    type=click.Choice(domains.names()),
    multiple=True,
    help="A domain to score (repeatable); default: every registered domain.",
)
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def worker(chosen: tuple[DomainName, ...], loglevel: str) -> None:
    """Score the raw topics with the registry's live models until stopped (Ctrl-C, SIGTERM).

    Workers with the same SIGNALYARD_PIPELINE__APP_ID split the partitions between them.
    """
    # Imported here so that other commands start without loading torch and Faust.
    from models.serving.loading import load_live_scorer
    from streams.app import run_worker
    from streams.observability.log_limits import limit_client_logs

    settings = load_settings()
    names = chosen or domains.names()
    scorers = {domain: load_live_scorer(settings, domain) for domain in names}
    limit_client_logs()  # a broker that is away, or refuses the credentials, for minutes
    asyncio.run(wait_for_broker(settings.kafka, _say))
    provision(settings)
    run_worker(settings, scorers, loglevel)


def _say(line: str) -> None:
    click.echo(f"signalyard: {line}; waiting for it (SIGTERM or Ctrl-C stops)", err=True)


@click.command(name="produce")
@click.argument("domain", type=click.Choice(domains.names()))
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Events as CSV (a header row of field names) or JSONL (one JSON object a line).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Events per second; default: as fast as the broker takes them.",
)
def produce_file(domain: DomainName, path: Path, rate: float | None) -> None:
    """Send the events of a file to DOMAIN's raw topic (the worker validates them)."""
    try:
        file_format(path)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--file") from None
    settings = load_settings()
    topic = settings.topics.raw(domain)
    asyncio.run(provision_topics(settings.kafka, [topic]))
    sent = asyncio.run(produce(settings.kafka, topic.name, read_records(domain, path), rate))
    click.echo(f"sent {sent} events to {topic.name}")
