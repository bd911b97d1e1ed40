"""Read-only queries for people and pages: ``signalyard sql``, the worker's SQL endpoint and its
dashboard.

ClickHouse itself enforces read-only (the ``readonly=1`` setting on every query, which also
forbids changing that setting); statements that cannot be reads are refused up front only to
give a clearer message than the server's; ``INTO OUTFILE`` is refused up front because the
embedded engine writes such files even in read-only mode.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.clickhouse import connect

READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
READ_ONLY = {"readonly": 1}
# The embedded engine writes INTO OUTFILE files itself, past readonly (a server refuses them).
INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)


class QueryError(Exception):
    """The query was refused or failed; the message is one line."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]  # JSON values: times and other types as strings

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


def read_statement(sql: str) -> str:
    """The statement without a trailing semicolon; QueryError unless it starts like a read."""
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise QueryError("empty query")
    # Leading comments and parentheses do not change what a statement is.
    words = re.sub(r"(--[^\n]*\n|/\*.*?\*/|\()", " ", statement + "\n", flags=re.S).split()
    first = words[0].upper() if words else ""
    if first not in READ_STATEMENTS:
        raise QueryError(
            f"only reads are allowed ({', '.join(READ_STATEMENTS)}); refused: {first or sql!r}"
        )
    if INTO_OUTFILE.search(statement):
        raise QueryError("INTO OUTFILE writes a file; refused")
    return statement


def run_read_only(client: Client, sql: str) -> QueryResult:
    """Run one read statement with ClickHouse's readonly=1; QueryError on refusal or failure."""
    statement = read_statement(sql)
    try:
        result = client.query(statement, settings=READ_ONLY)
    except Exception as error:
        raise QueryError(_first_line(str(error))) from error
    rows = json.loads(json.dumps(result.result_rows, default=_jsonable))
    return QueryResult(list(result.column_names), rows)


class ReadOnlyStore:
    """Read-only queries from async code: a client of its own, called on a thread of its own so
    a slow query never stalls the event loop (the worker's sink has its own client and thread;
    two clients of one process may share an embedded store). The client lives as long as the
    process: it only reads, so there is nothing to flush when the process ends."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")
        self._client: Client | None = None

    async def query(self, sql: str) -> QueryResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._query, sql)

    def _query(self, sql: str) -> QueryResult:
        if self._client is None:
            self._client = connect(self._dsn)
        return run_read_only(self._client, sql)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # decimals, UUIDs, IP addresses, ...


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "query failed"
