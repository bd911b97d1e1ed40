"""``signalyard alerts tail`` (print alerts as they arrive) and ``signalyard alerts worker``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.markup import escape

import domains
from config.settings import DomainName, Settings, load_settings
from signalyard.cli.provision import provision
from streams.alerting.rules import SEVERITIES, Severity, load_rules
from streams.connection import consumer_options
from streams.topics import provision_topics

SEVERITY_STYLES = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


@click.group()
def alerts() -> None:
    """Alerts from the windowed rules of config/alerts.toml."""


@alerts.command()
@click.option("--domain", type=click.Choice(domains.names()), help="Only alerts of this domain.")
@click.option(
    "--severity",
    type=click.Choice(SEVERITIES),
    help="Only alerts of this severity or a higher one (info < warning < critical).",
)
@click.option("--from-beginning", is_flag=True, help="Start with the oldest alert the topic keeps.")
@click.option("--json", "as_json", is_flag=True, help="Print each alert as one JSON line.")
def tail(
    domain: DomainName | None, severity: Severity | None, from_beginning: bool, as_json: bool
) -> None:
    """Print alerts as they arrive, until stopped (Ctrl-C). Commits nothing to Kafka."""
    settings = load_settings()
    wanted = SEVERITIES[SEVERITIES.index(severity) :] if severity else SEVERITIES
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a tail ends
        asyncio.run(_tail(settings, domain, wanted, from_beginning, as_json))


async def _tail(
    settings: Settings,
    domain: DomainName | None,
    severities: tuple[Severity, ...],
    from_beginning: bool,
    as_json: bool,
) -> None:
    # Provisioned like `produce` does, so a tail may start before the first worker does.
    [topic] = await provision_topics(settings.kafka, [settings.topics.alerts])
    partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    # No group: a reader that commits nothing and never takes partitions from anyone.
    # The reset matches the seek below, so that a late reset cannot undo the seek.
    reset = "earliest" if from_beginning else "latest"
    consumer = AIOKafkaConsumer(
        **consumer_options(settings.kafka), enable_auto_commit=False, auto_offset_reset=reset
    )
    console = Console(highlight=False, soft_wrap=True)
    await consumer.start()
    try:
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        for partition in partitions:
            await consumer.position(partition)  # resolved now: every later alert is shown
        print(f"tailing {topic.name} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        async for record in consumer:
            alert = json.loads(record.value)
            if (domain and alert["domain"] != domain) or alert["severity"] not in severities:
                continue
            if as_json:
                print(json.dumps(alert), flush=True)
            else:
                console.print(_line(alert))
                # Flushed per alert so that a pipe (| grep, | tee) sees it as it arrives.
                sys.stdout.flush()
    finally:
        await consumer.stop()


def _line(alert: dict) -> str:
    evidence = alert["evidence"]
    figures = " ".join(
        f"{name}={_figure(evidence[name])}"
        for name in ("count", "mean", "matched", "share", "streak")
        if name in evidence
    )
    style = SEVERITY_STYLES.get(alert["severity"], "")
    return (
        f"{escape(alert['ts'])}  [{style}]{alert['severity'].upper():8}[/]  "
        f"{alert['domain']:7}  [bold]{escape(alert['entity'])}[/]  {escape(alert['rule'])}  "
        f"{figures}  events={','.join(evidence['event_ids'][-5:])}  "
        f"model={escape(alert['model_version'])}  id={alert['alert_id']}{_why(evidence)}"
    )


def _why(evidence: dict) -> str:
    """The triggering event's explanation (its top words or columns), when it has one."""
    return f"  why: {escape(evidence['explanation'])}" if evidence.get("explanation") else ""


def _figure(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@alerts.command()
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def worker(loglevel: str) -> None:
    """Run only alerting (no models) on the scored topics, until stopped.

    For alerting apart from scoring: set SIGNALYARD_ALERTS__IN_SCORING_WORKERS=false for the
    scoring workers, and give these workers their own SIGNALYARD_PIPELINE__APP_ID (workers of
    one app id must run the same agents).
    """
    # Imported here so that other commands start without loading Faust.
    from streams.app import run_worker

    settings = load_settings()
    load_rules(settings.rules_path)  # a bad rules file fails before anything is provisioned
    provision(settings)
    run_worker(settings, {}, loglevel)
