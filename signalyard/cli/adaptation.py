"""DomainName adaptation: `signalyard feedback import`, `signalyard retrain`, `signalyard trainer`.

Heavy imports (torch, Faust) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

import domains
from config.settings import DomainName, Settings, load_settings
from models.registry import Registry
from store import queries
from store.readonly import QueryError, query_store
from streams.adaptation.messages import RetrainRequest
from streams.producer import produce
from streams.topics import provision_topics

if TYPE_CHECKING:
    from streams.adaptation.trainer import Trainer

LOOKUP_CHUNK = 500  # event ids per store query


@click.group()
def feedback() -> None:
    """Labels for scored events (the feedback.labels topic)."""


@feedback.command(name="import")
@click.argument("domain", type=click.Choice(domains.names()))
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labeled CSV in the format of the domain's model (sentiment: text,label; intent_risk: "
    "text,intent; defect: the AI4I columns).",
)
@click.option("--labeler", default="import", show_default=True, help="Who gave the labels.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N rows.")
def import_labels(domain: DomainName, path: Path, labeler: str, limit: int | None) -> None:
    """Publish a label for every row of a file; rows whose event is not in the store yet are
    first published as events, for the workers to score."""
    from streams.adaptation.feedback_import import label_record, labeled_events

    settings = load_settings()
    intents: tuple[str, ...] = ()
    if domains.get(domain).task == "intent_risk":
        from models.tasks import TAXONOMY_FILE
        from models.taxonomy import RiskTaxonomy

        live = Registry(settings.models_dir).live_dir(domain)
        intents = tuple(RiskTaxonomy.load(live / TAXONOMY_FILE).intents)
    now = datetime.now(UTC)
    items = labeled_events(domain, path, intents, now)[:limit]
    unique = list({item.event_id: item for item in items}.values())
    try:
        stored = _stored_ids(settings, domain, [item.event_id for item in unique])
    except QueryError as error:
        raise click.ClickException(f"cannot tell which events are stored: {error}") from None
    topics = settings.topics
    asyncio.run(provision_topics(settings.kafka, [topics.raw(domain), topics.feedback_labels]))
    new_events = [item.event for item in unique if item.event_id not in stored]
    asyncio.run(produce(settings.kafka, topics.raw(domain).name, new_events))
    labels = [label_record(item, domain, labeler, now) for item in items]
    asyncio.run(produce(settings.kafka, topics.feedback_labels.name, labels))
    click.echo(
        f"published {len(new_events)} new {domain} events to {topics.raw(domain).name} and "
        f"{len(labels)} labels to {topics.feedback_labels.name}"
    )


def _stored_ids(settings: Settings, domain: DomainName, event_ids: list[str]) -> set[str]:
    stored: set[str] = set()
    for start in range(0, len(event_ids), LOOKUP_CHUNK):
        chunk = event_ids[start : start + LOOKUP_CHUNK]
        result = query_store(settings, queries.stored_event_ids(domain, chunk))
        stored |= {row[0] for row in result.rows}
    return stored


@click.command()
@click.argument("domain", type=click.Choice(domains.names()))
@click.option("--detail", default="asked by hand", show_default=True, help="Why, for the record.")
def retrain(domain: DomainName, detail: str) -> None:
    """Ask the trainer for a DOMAIN candidate now (a manual trigger)."""
    settings = load_settings()
    request = RetrainRequest(
        request_id=uuid.uuid4().hex,
        domain=domain,
        reason="manual",
        detail=detail,
        live_version=Registry(settings.models_dir).live_version(domain),
        requested_at=datetime.now(UTC),
    )
    topic = settings.topics.retrain_requests
    asyncio.run(provision_topics(settings.kafka, [topic]))
    asyncio.run(produce(settings.kafka, topic.name, [request.record()]))
    click.echo(f"requested a {domain} candidate ({request.request_id}) on {topic.name}")


@click.command()
@click.option(
    "--loglevel",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
def trainer(loglevel: str) -> None:
    """Adapt live models on retrain requests, gate the candidates and announce promotions;
    runs until stopped (Ctrl-C, SIGTERM). An embedded store is read through its worker's SQL
    endpoint: give the worker and the trainer the same SIGNALYARD_PIPELINE__WEB_PORT."""
    from streams.adaptation.trainer import Trainer

    settings = load_settings()
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s] %(levelname)s %(message)s")
    topics = settings.topics
    asyncio.run(
        provision_topics(
            settings.kafka, [topics.retrain_requests, topics.model_updates, topics.deadletter]
        )
    )
    asyncio.run(_run_trainer(Trainer(settings)))


async def _run_trainer(runner: Trainer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await runner.run(stop)
