"""``signalyard explain DOMAIN (--event-id ID | --text TEXT | --file CSV)``: which words or
columns made a model say what it said (``models.serving.explanations``).

An event id is looked up in the store (through a running worker when it holds the embedded
store, as ``signalyard sql`` does) and explained with the version that scored it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

import domains
from config.settings import DomainName, Settings, load_settings
from models.registry import Registry

if TYPE_CHECKING:
    from models.serving.explanations import Explanation

console = Console(stderr=True)


def stored_input(settings: Settings, domain: DomainName, event_id: str) -> tuple[Any, str]:
    """The model input of a stored, scored event and the version that scored it;
    ClickException when the store has no such event."""
    from store import queries
    from store.readonly import QueryError, query_store
    from streams.stored_events import stored_event

    try:
        result = query_store(settings, queries.stored_events(domain, [event_id]))
    except QueryError as error:
        raise click.ClickException(str(error)) from None
    if not result.rows:
        raise click.ClickException(f"no scored {domain} event with id {event_id!r} in the store")
    found = stored_event(domain, dict(zip(result.columns, result.rows[0], strict=True)))
    return found.model_input, found.model_version


def _inputs(domain: DomainName, text: str | None, file: Path | None) -> list[Any]:
    from models.data import read_readings, read_texts

    if domains.get(domain).task == "defect":
        if text is not None:
            raise click.UsageError(
                f"{domain} models are explained by --event-id or --file (AI4I columns)"
            )
        assert file is not None
        return list(read_readings(file).readings)
    if text is not None:
        if not text.strip():
            raise click.UsageError("--text is empty")
        return [text.strip()]
    assert file is not None
    return read_texts(file, domain=domain)


def _print(title: str, explanation: Explanation, top_k: int) -> None:
    toward, against = explanation.top(top_k)
    table = Table("", "input", "score", title=f"{title}: {explanation.label} "
                  f"(p={explanation.probability:.3f}), {explanation.method}")  # fmt: skip
    for kind, items in (("for", toward), ("against", against)):
        for a in items:
            name = a.feature if a.value is None else f"{a.feature} = {a.value:g} {a.unit}"
            if a.reference is not None:
                name += f" (reference {a.reference:g})"
            table.add_row(kind, name, f"{a.score:+.4f}")
    Console().print(table)
    console.print(f"completeness gap (delta) {explanation.delta:+.4f}")


@click.command()
@click.argument("domain", type=click.Choice(domains.names()))
@click.option("--event-id", help="A scored event in the store (explained with its version).")
@click.option("--text", help="A text to explain (text models).")
@click.option(
    "--file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV (or JSONL) of texts with a text column (and the domain's other labeled columns,"
    " read as in training), or of AI4I readings (defect models).",
)
@click.option("--version", help="Registry version (default: the one that scored it, or live).")
@click.option("--target", help="Explain toward this label instead of the predicted one.")
@click.option("--steps", type=click.IntRange(min=1, max=1024), help="Integrated-gradients steps.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per explanation.")
def explain(
    domain: DomainName,
    event_id: str | None,
    text: str | None,
    file: Path | None,
    version: str | None,
    target: str | None,
    steps: int | None,
    as_json: bool,
) -> None:
    """Attribute a DOMAIN prediction to the words of its text or the columns of its reading."""
    from models.serving.explanations import Explainer

    if sum(x is not None for x in (event_id, text, file)) != 1:
        raise click.UsageError("give exactly one of --event-id, --text and --file")
    settings = load_settings()
    registry = Registry(settings.models_dir)
    if event_id is not None:
        model_input, scored_by = stored_input(settings, domain, event_id)
        inputs, sources = [model_input], [f"event {event_id}"]
        version = version or scored_by
    else:
        inputs = _inputs(domain, text, file)
        sources = [f"row {i + 1}" if file else "text" for i in range(len(inputs))]
    folder = (
        registry.existing_version_dir(domain, version) if version else registry.live_dir(domain)
    )
    explainer = Explainer(
        folder, steps or settings.explanations.steps, settings.inference.max_seq_length
    )
    try:
        explanations = explainer.explain(inputs, target)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    for source, explanation in zip(sources, explanations, strict=True):
        record = {"domain": domain, "version": folder.name, **explanation.to_dict()}
        if as_json:
            click.echo(json.dumps({"input": source, **record}))
        else:
            title = f"{domain} {source} ({folder.name})"
            _print(title, explanation, settings.explanations.top_k)
