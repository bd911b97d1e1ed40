"""Writing backtest runs (``signalyard replay``): to the store directly, or through the worker
that holds an embedded store.

An embedded store opens in one process at a time. While a worker holds it, a replay reads and
scores in its own process and sends its rows to the worker (``POST /backtest/rows`` and
``/backtest/forget`` on ``pipeline.web_port``, loopback clients only), which writes them on a
thread of its own, one request at a time: the replay waits for each write, so it can never
queue more than one chunk in the worker, and live scoring's event loop never waits on it. With
a ClickHouse server, or with no worker running, the replay opens the store itself.

Both ways write the same bytes: rows as JSONEachRow (times as ISO 8601), parsed by ClickHouse,
so a replay stores the same values whichever way it went.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

import domains
from config.settings import Settings
from store.connection import CHDB_SCHEME, ClickHouseInUseError, connect
from store.schema import create_tables
from store.web_token import credentials

RUNS_TABLE = "backtest_runs"
WORKER_TIMEOUT_S = 120
# A request body the worker's web server accepts (aiohttp refuses more than 1 MiB by default).
MAX_CHUNK_BYTES = 512 * 1024
INSERT_SETTINGS = {"date_time_input_format": "best_effort"}


def scores_table(domain: str) -> str:
    """The table of a domain's backtest scores: the live table's columns behind ``run_id``."""
    return f"backtest_{domain}_scores"


BACKTEST_TABLES = frozenset({RUNS_TABLE, *(scores_table(domain) for domain in domains.names())})


class BacktestStoreError(Exception):
    """The run could not be written; the message is one line."""


class RunWriter(Protocol):
    """Where a replay writes its run."""

    def forget(self, run_id: str) -> None:
        """Delete whatever an earlier replay wrote under ``run_id``."""
        ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (column -> value) to ``table``, one of ``BACKTEST_TABLES``."""
        ...


def json_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows as JSONEachRow: one object per line, times as ISO 8601."""
    return b"".join(json.dumps(row, default=_jsonable).encode() + b"\n" for row in rows)


def insert_json_rows(client: Client, table: str, body: bytes) -> None:
    """Insert JSONEachRow ``body`` into a backtest table; ValueError for any other table."""
    if table not in BACKTEST_TABLES:
        raise ValueError(f"{table!r} is not a backtest table")
    if body:
        client.raw_insert(table, insert_block=body, fmt="JSONEachRow", settings=INSERT_SETTINGS)


def delete_run(client: Client, run_id: str) -> None:
    """Delete what ``run_id`` holds in every backtest table, of whichever domain and range."""
    for table in sorted(BACKTEST_TABLES):
        client.command(
            f"DELETE FROM {table} WHERE run_id = {{run_id:String}}", parameters={"run_id": run_id}
        )


class StoreRunWriter:
    """Writes through a client of this process."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def forget(self, run_id: str) -> None:
        delete_run(self.client, run_id)

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        insert_json_rows(self.client, table, json_rows(rows))


class WorkerRunWriter:
    """Writes through the worker serving ``port`` on this machine, in chunks it accepts."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        """``headers``: the worker's credentials (``store.web_token.credentials``)."""
        self.root = f"http://127.0.0.1:{port}"
        self.headers = headers

    def forget(self, run_id: str) -> None:
        self._post("forget", {"run_id": run_id}, b"")

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        chunk: list[bytes] = []
        size = 0
        for row in rows:
            line = json_rows([row])
            if chunk and size + len(line) > MAX_CHUNK_BYTES:
                self._post("rows", {"table": table}, b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._post("rows", {"table": table}, b"".join(chunk))

    def answers(self) -> bool:
        """Whether a worker serves the port (a refused connection: no)."""
        try:
            with urllib.request.urlopen(f"{self.root}/healthz", timeout=5):
                return True
        except urllib.error.URLError as error:
            if isinstance(error.reason, ConnectionRefusedError):
                return False
            raise BacktestStoreError(f"worker at {self.root}: {error.reason}") from None

    def _post(self, action: str, query: dict[str, str], body: bytes) -> None:
        url = f"{self.root}/backtest/{action}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WORKER_TIMEOUT_S):
                return
        except urllib.error.HTTPError as error:
            message = json.load(error).get("error", f"HTTP {error.code}")
            raise BacktestStoreError(f"the worker refused the write: {message}") from None
        except urllib.error.URLError as error:
            raise BacktestStoreError(f"worker at {self.root}: {error.reason}") from None


@contextmanager
def run_writer(settings: Settings) -> Iterator[RunWriter]:
    """The way to write runs now: a ClickHouse server or a free embedded store directly, an
    embedded store that a worker holds through that worker (``pipeline.web_port``).

    Raises BacktestStoreError when the embedded store is held by a process that does not
    serve it (a worker without a web port, or any other process)."""
    dsn = settings.clickhouse_dsn
    port = settings.pipeline.web_port
    if dsn.startswith(CHDB_SCHEME) and port:
        through_worker = WorkerRunWriter(port, credentials(settings))
        if through_worker.answers():
            yield through_worker
            return
    try:
        client = connect(dsn)
    except ClickHouseInUseError as error:
        raise BacktestStoreError(
            f"{error}; a worker with a web port (SIGNALYARD_PIPELINE__WEB_PORT) takes a "
            "replay's writes itself"
        ) from None
    try:
        create_tables(client)
        yield StoreRunWriter(client)
    finally:
        client.close()


class BacktestWrites:
    """The worker's side: writes replays' runs on one thread of its own, with its own client
    (two clients of one process may share an embedded store), one request at a time."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backtest-write")
        self._client: Client | None = None

    async def forget(self, run_id: str) -> None:
        await self._run(delete_run, run_id)

    async def insert(self, table: str, body: bytes) -> None:
        await self._run(insert_json_rows, table, body)

    async def _run(self, write: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, write, args)

    def _write(self, write: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self._client is None:
            self._client = connect(self._dsn)
        write(self._client, *args)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
