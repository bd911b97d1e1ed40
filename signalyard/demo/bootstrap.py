"""A live model for every domain, trained from the synthetic world (or the demo's real data)
when the registry has none.

This is how a fresh machine gets from nothing to a scoring stream: small labeled CSVs in the
formats of ``train_model`` are written under ``$SIGNALYARD_HOME/bootstrap`` from the project's
own generator, and a small model is trained on each ("head" mode for text: a linear head on
the bundled encoder's frozen embeddings). Domains that already have a live model are left alone.

``agreement`` measures how well a live model follows the world's own truth on fresh draws (a
demo is only believable when its label counts are those of the world).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import domains
from config.settings import DomainName, Settings
from models.registry import Registry
from models.tasks import TEXT_TASKS
from models.training.options import TrainOptions
from models.training.trainer import train_model
from signalyard.demo.feed import DomainData
from signalyard.demo.synthetic import (
    World,
    event_input,
    write_taxonomy,
    write_training_csv,
)


@dataclass(frozen=True)
class BootstrapSize:
    """Rows per domain, text training epochs and the most boosting rounds of the defect
    model: enough for a sensible demo, quick on a CPU."""

    text_rows: int = 300
    sensor_rows: int = 2000
    text_epochs: int | None = 60  # enough for sharp probabilities on templated text
    sensor_rounds: int = 60


def ensure_models(
    settings: Settings,
    names: tuple[DomainName, ...],
    size: BootstrapSize | None = None,
    on_training: Callable[[DomainName, str], None] | None = None,
    data: Mapping[DomainName, DomainData] | None = None,
) -> dict[DomainName, str]:
    """The live version of each domain, training one first where there is none.

    A domain in ``data`` (``signalyard demo --data``) trains on its real rows, in head mode,
    where it has no live model or only one trained from the synthetic world; the others
    train from the synthetic world. ``on_training(domain, what it trains on)`` is called first.
    """
    size = size or BootstrapSize()
    registry = Registry(settings.models_dir)
    synthetic = settings.home_dir / "bootstrap"
    live: dict[DomainName, str] = {}
    for domain in names:
        version = registry.live_version(domain)
        real = (data or {}).get(domain)
        if real is not None and (version is None or _from_synthetic(registry, domain, synthetic)):
            source, csv_path, taxonomy, epochs = (
                " and ".join(real.sets),
                real.train,
                real.taxonomy,
                None,
            )
        elif version is None:
            source = "the synthetic world"
            text = domains.get(domain).task in TEXT_TASKS
            rows = size.text_rows if text else size.sensor_rows
            csv_path = write_training_csv(domain, synthetic / f"{domain}.csv", rows)
            taxonomy = write_taxonomy(domain, synthetic / f"{domain}-taxonomy.json")
            epochs = size.text_epochs if text else size.sensor_rounds
        else:
            live[domain] = version
            continue
        if on_training is not None:
            on_training(domain, source)
        options = TrainOptions(
            mode="head",
            epochs=epochs,
            taxonomy=taxonomy,
            device=settings.inference.device,
            max_seq_length=settings.inference.max_seq_length,
            show_progress=False,
        )
        live[domain] = train_model(domain, domains.get(domain).task, csv_path, registry, options)
    return live


def _from_synthetic(registry: Registry, domain: DomainName, synthetic: Path) -> bool:
    """Whether the live model of ``domain`` was trained on the synthetic world's rows."""
    metadata = registry.metadata(domain, registry.live_dir(domain).name)
    trained_on = Path(metadata.get("data", {}).get("path", "/"))
    return trained_on.is_relative_to(synthetic.resolve())


@dataclass(frozen=True)
class Agreement:
    """A live model against the world's truth on ``events`` fresh draws: counts by summary label
    (sentiment, risk level, defect flag), the share of events whose summary label is right, and
    the share whose feedback label (sentiment, intent, failure mode) is right."""

    domain: DomainName
    events: int
    truth: dict[str, int]
    predicted: dict[str, int]
    accuracy: float
    feedback_accuracy: float


def agreement(
    settings: Settings, domain: DomainName, events: int, seed: int = 7, batch_size: int = 64
) -> Agreement:
    """Score ``events`` draws of ``World(seed)`` with ``domain``'s live model."""
    from models.serving.loading import load_live_scorer  # torch, for a text model

    scorer = load_live_scorer(settings, domain)
    world = World(seed=seed)
    draws = [world.draw(domain) for _ in range(events)]
    inputs = [event_input(domain, event) for event, _ in draws]
    predictions = [
        prediction
        for start in range(0, events, batch_size)
        for prediction in scorer.score(inputs[start : start + batch_size])
    ]
    truth = [world.simulations[domain].summary(label) for _, label in draws]
    rows: list[dict] = [dict(p) for p in predictions]
    predicted = [str(row[domains.get(domain).summary_field]).lower() for row in rows]
    right = [
        str(row[domains.get(domain).feedback_field]) == label
        for row, (_, label) in zip(rows, draws, strict=True)
    ]
    return Agreement(
        domain=domain,
        events=events,
        truth=dict(Counter(truth).most_common()),
        predicted=dict(Counter(predicted).most_common()),
        accuracy=sum(t == p for t, p in zip(truth, predicted, strict=True)) / events,
        feedback_accuracy=sum(right) / events,
    )
