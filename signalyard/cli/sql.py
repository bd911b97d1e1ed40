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
import urllib.error
import urllib.request
from typing import Any

import click

from signalyard.settings import Settings, load_settings
from sinks.clickhouse import CHDB_SCHEME, ClickHouseInUseError, connect
from sinks.readonly import QueryError, QueryResult, read_statement, run_read_only

WORKER_TIMEOUT_S = 60


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
        result = run(settings, query)
    except QueryError as error:
        raise click.ClickException(str(error)) from None
    PRINTERS[output](result)


def run(settings: Settings, query: str) -> QueryResult:
    dsn = settings.clickhouse_dsn
    if dsn.startswith(CHDB_SCHEME) and settings.pipeline.web_port:
        try:
            return _through_worker(settings.pipeline.web_port, query)
        except ConnectionRefusedError:
            pass  # no worker serves this port: the store may be free to open here
    try:
        client = connect(dsn)
    except ClickHouseInUseError as error:
        raise click.ClickException(
            f"{error}; or give that worker a web port (SIGNALYARD_PIPELINE__WEB_PORT), "
            "through which signalyard sql then queries it"
        ) from None
    try:
        return run_read_only(client, query)
    finally:
        client.close()


def _through_worker(port: int, query: str) -> QueryResult:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/sql", data=query.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WORKER_TIMEOUT_S) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.load(error)
        raise QueryError(body.get("error", f"the worker answered HTTP {error.code}")) from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, ConnectionRefusedError):
            raise error.reason from None
        raise QueryError(f"worker on port {port}: {error.reason}") from None
    return QueryResult(body["columns"], body["rows"])


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
