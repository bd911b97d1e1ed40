"""Read-only queries for people and pages: ``signalyard sql``, the worker's SQL endpoint and its
dashboard.

ClickHouse itself enforces read-only (the ``readonly=1`` setting on every query, which also
forbids changing that setting) and the limits of ``[queries]`` (time, memory, rows and bytes
read, rows and bytes returned; over a limit the query fails, ``*_overflow_mode = 'throw'``,
rather than returning part of an answer as if it were all). With the embedded store a query
runs inside the worker, beside live scoring: the result limits are what keep one query from
taking the worker's memory. Statements that cannot be reads are refused up front only to give
a clearer message than the server's; ``INTO OUTFILE`` is refused up front because the
embedded engine writes such files even in read-only mode.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from config.settings import QuerySettings, Settings
from store.connection import CHDB_SCHEME, ClickHouseInUseError, connect
from store.web_token import credentials

WORKER_TIMEOUT_S = 60

READ_STATEMENTS = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS")
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


def query_settings(limits: QuerySettings) -> dict[str, int | float | str]:
    """ClickHouse settings of a read-only query under ``limits``."""
    return {
        "readonly": 1,
        "max_execution_time": limits.max_execution_time_s,
        "timeout_overflow_mode": "throw",
        "max_memory_usage": limits.max_memory_usage_bytes,
        "max_rows_to_read": limits.max_rows_to_read,
        "max_bytes_to_read": limits.max_bytes_to_read,
        "read_overflow_mode": "throw",
        "max_result_rows": limits.max_result_rows,
        "max_result_bytes": limits.max_result_bytes,
        "result_overflow_mode": "throw",
    }


def run_read_only(client: Client, sql: str, limits: QuerySettings) -> QueryResult:
    """Run one read statement read-only and within ``limits``; QueryError on refusal, on a
    limit exceeded (ClickHouse's message) or on failure."""
    statement = read_statement(sql)
    try:
        result = client.query(statement, settings=query_settings(limits))
    except Exception as error:
        raise QueryError(_first_line(str(error))) from error
    rows = json.loads(json.dumps(result.result_rows, default=_jsonable))
    return QueryResult(list(result.column_names), rows)


class ReadOnlyStore:
    """Read-only queries from async code: a client of its own, called on a thread of its own so
    a slow query never stalls the event loop (the worker's sink has its own client and thread;
    two clients of one process may share an embedded store). The client lives as long as the
    process: it only reads, so there is nothing to flush when the process ends."""

    def __init__(self, dsn: str, limits: QuerySettings) -> None:
        self._dsn = dsn
        self._limits = limits
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-read")
        self._client: Client | None = None

    async def query(self, sql: str) -> QueryResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._query, sql)

    def _query(self, sql: str) -> QueryResult:
        if self._client is None:
            self._client = connect(self._dsn)
        return run_read_only(self._client, sql, self._limits)


def query_store(settings: Settings, sql: str) -> QueryResult:
    """One read-only query on the settings' store, from a process that is not its worker.

    With a ClickHouse server the query goes to the server; an embedded store opens in one
    process at a time, so while a worker holds it the query goes through that worker's SQL
    endpoint (``pipeline.web_port``), and otherwise the store is opened here.
    """
    dsn = settings.clickhouse_dsn
    if dsn.startswith(CHDB_SCHEME) and settings.pipeline.web_port:
        try:
            return _through_worker(settings.pipeline.web_port, sql, credentials(settings))
        except ConnectionRefusedError:
            pass  # no worker serves this port: the store may be free to open here
    try:
        client = connect(dsn)
    except ClickHouseInUseError as error:
        raise QueryError(
            f"{error}; or give that worker a web port (SIGNALYARD_PIPELINE__WEB_PORT), "
            "through which the store is then queried"
        ) from None
    try:
        return run_read_only(client, sql, settings.queries)
    finally:
        client.close()


def _through_worker(port: int, sql: str, headers: dict[str, str]) -> QueryResult:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/sql", data=sql.encode(), headers=headers, method="POST"
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


def sql_string(value: str) -> str:
    """A ClickHouse string literal of ``value``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_list(values: Iterable[str]) -> str:
    """A ClickHouse tuple of string literals, for ``IN``."""
    return "(" + ", ".join(sql_string(value) for value in values) + ")"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # decimals, UUIDs, IP addresses, ...


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "query failed"
