"""``signalyard sql``: one read-only query against the configured ClickHouse, as a table, CSV
or JSON.

With a ClickHouse server the query goes to the server; an embedded store opens in one process
at a time, so while a worker holds it the query goes through that worker's SQL endpoint
(``pipeline.web_port``), and otherwise the store is opened here. Either way ClickHouse runs it
with ``readonly=1``.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import click

from config.settings import load_settings
from store.readonly import QueryError, QueryResult, query_store, read_statement


@click.command()
@click.argument("query")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="json: an array of objects, one per row.",
)
def sql(query: str, output: str) -> None:
    """Run a read-only QUERY (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) and print the rows."""
    settings = load_settings()
    try:
        read_statement(query)  # refused before anything is opened
        result = query_store(settings, query)
    except QueryError as error:
        raise click.ClickException(str(error)) from None
    PRINTERS[output](result)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _print_table(result: QueryResult) -> None:
    cells = [result.columns, *([_text(value) for value in row] for row in result.rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(result.columns))]
    for n, line in enumerate(cells):
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
        if n == 0:
            click.echo("  ".join("-" * width for width in widths))
    click.echo(f"({len(result.rows)} row{'' if len(result.rows) == 1 else 's'})")


def _print_csv(result: QueryResult) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([_text(value) for value in row] for row in result.rows)


def _print_json(result: QueryResult) -> None:
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    click.echo(json.dumps(rows, indent=2))


PRINTERS = {"table": _print_table, "csv": _print_csv, "json": _print_json}
