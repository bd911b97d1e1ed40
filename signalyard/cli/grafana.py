"""``signalyard grafana``: the Grafana board of the registered domains, written where Grafana
provisions dashboards from (docker/compose.yaml runs it before Grafana starts)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, writable=True, path_type=Path))
def grafana(out: Path) -> None:
    """Write the Grafana dashboard JSON of every registered domain to OUT."""
    from streams.observability.grafana import board

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(board(), indent=1) + "\n", encoding="utf-8")
    click.echo(f"wrote the Grafana board to {out}")
