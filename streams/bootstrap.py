"""A live model for every domain, trained from the synthetic world when the registry has none.

This is how a fresh machine gets from nothing to a scoring stream: small labeled CSVs in the
formats of ``train_model`` are written under ``$SIGNALYARD_HOME/bootstrap`` from the project's
own generator, and a small model is trained on each ("head" mode for text: a linear head on
the bundled encoder's frozen embeddings). Domains that already have a live model are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.options import TrainOptions
from models.registry import Registry
from models.training import train_model
from signalyard.settings import Domain, Settings
from streams.synthetic import write_taxonomy, write_training_csv


@dataclass(frozen=True)
class BootstrapSize:
    """Rows per domain, text training epochs and the most boosting rounds of the defect
    model: enough for a sensible demo, quick on a CPU."""

    text_rows: int = 300
    sensor_rows: int = 2000
    text_epochs: int | None = None  # None: the trainer's default for head mode
    sensor_rounds: int = 60


def ensure_models(
    settings: Settings,
    domains: tuple[Domain, ...],
    size: BootstrapSize | None = None,
    on_training: Callable[[Domain], None] | None = None,
) -> dict[Domain, str]:
    """The live version of each domain, training one first where there is none."""
    size = size or BootstrapSize()
    registry = Registry(settings.models_dir)
    data = settings.home_dir / "bootstrap"
    live: dict[Domain, str] = {}
    for domain in domains:
        version = registry.live_version(domain)
        if version is None:
            if on_training is not None:
                on_training(domain)
            rows = size.sensor_rows if domain == "sensors" else size.text_rows
            csv_path = write_training_csv(domain, data / f"{domain}.csv", rows)
            options = TrainOptions(
                mode="head",
                epochs=size.sensor_rounds if domain == "sensors" else size.text_epochs,
                taxonomy=write_taxonomy(data / "taxonomy.json") if domain == "tickets" else None,
                device=settings.inference.device,
                max_seq_length=settings.inference.max_seq_length,
                show_progress=False,
            )
            version = train_model(domain, csv_path, registry, options)
        live[domain] = version
    return live
