"""The ClickHouse sink: group-commit inserts with retry and back-pressure.

Consumers ``await sink.write(table, rows)`` and commit their Kafka offsets only after it returns,
so every row is either in ClickHouse or will be replayed; the ReplacingMergeTree tables collapse
replayed copies (read with ``FINAL`` for exact counts, see ``count_final``). Rows from all
callers are grouped per table into one insert by size or age, whichever comes first. While the
server is unavailable inserts are retried with backoff and callers keep waiting; a retried
insert that had landed although its reply was lost is dropped by the store's insert
deduplication (``store.schema``). Once ``max_pending_rows`` rows wait,
``write`` itself waits, which pauses consumption instead of dropping rows or buffering without
bound.

The clients are synchronous and not thread-safe, so every client call runs in one dedicated
worker thread; the event loop never blocks on ClickHouse.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    NotSupportedError,
    ProgrammingError,
)

from config.settings import SinkSettings
from store.connection import CHDB_SCHEME, connect

log = logging.getLogger(__name__)

T = TypeVar("T")

# Server error codes about the rows or the schema, which the same insert would hit again:
# CANNOT_PARSE_TEXT, NO_SUCH_COLUMN_IN_TABLE, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
# CANNOT_PARSE_DATETIME, TYPE_MISMATCH, SYNTAX_ERROR, CANNOT_CONVERT_TYPE, INCORRECT_DATA,
# ACCESS_DENIED, AUTHENTICATION_FAILED.
PERMANENT_CODES = frozenset({6, 16, 27, 41, 53, 62, 70, 117, 497, 516})


class SinkError(Exception):
    """Rows were not written and retrying will not help (or the sink is not running)."""


@dataclass
class _Batch:
    """Rows waiting for one table and column list, and the writers waiting for them."""

    since: float
    rows: list[list[Any]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class ClickHouseSink:
    """Batched, retried, back-pressured inserts into ClickHouse; see the module docstring."""

    def __init__(self, dsn: str, settings: SinkSettings) -> None:
        self._dsn = dsn
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-sink")
        self._client: Client | None = None
        self._batches: dict[tuple[str, tuple[str, ...]], _Batch] = {}
        self._pending = 0
        self._retries = 0
        self._inserts = 0
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pending_rows(self) -> int:
        """Rows accepted by ``write`` and not yet inserted (queue depth)."""
        return self._pending

    @property
    def retries(self) -> int:
        """Failed client calls that were retried, since start."""
        return self._retries

    @property
    def inserts(self) -> int:
        """Successful insert statements, since start."""
        return self._inserts

    @property
    def dsn(self) -> str:
        return self._dsn

    @property
    def connected(self) -> bool:
        """Whether the client is open and rows are being inserted (readiness)."""
        return self._client is not None and self._running()

    async def start(self) -> None:
        """Open the client (retrying while the server is unavailable) and start flushing."""
        hint = " (only one process may open an embedded ClickHouse directory)"
        what = f"connecting to {_redacted(self._dsn)}"
        if self._dsn.startswith(CHDB_SCHEME):
            what += hint
        self._client = await self._call(what, partial(connect, self._dsn))
        self._flusher = asyncio.create_task(self._flush_until_stopped(), name="clickhouse-sink")

    async def write(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Return once the rows are inserted; wait first while too many rows are pending.

        All rows of one call must have the same keys, the table's column names.
        Raises SinkError when the insert fails in a way retrying cannot fix; every writer
        whose rows shared that insert gets it.
        """
        if not rows:
            return
        columns = tuple(sorted(rows[0]))
        if any(row.keys() != rows[0].keys() for row in rows):
            raise ValueError(f"rows for {table} do not all have the same columns")
        limit = self._settings.max_pending_rows
        # Chunks no larger than the limit keep the bound strict for a very large call too.
        done: list[asyncio.Future[None]] = []
        for start in range(0, len(rows), limit):
            chunk = [[row[column] for column in columns] for row in rows[start : start + limit]]
            while self._pending + len(chunk) > limit and self._running():
                self._drained.clear()
                await self._drained.wait()
            if not self._running():
                raise SinkError(f"the ClickHouse sink is not running; {table} rows not written")
            done.append(self._enqueue(table, columns, chunk))
        await asyncio.gather(*done)

    async def stop(self) -> None:
        """Insert everything pending (retrying as long as that takes), then close the client.

        Cancel it (``asyncio.wait_for``) to give up waiting for an unavailable server: the
        writers still waiting get SinkError, so their offsets are not committed and the events
        replay after a restart.
        """
        self._stopping = True
        self._wakeup.set()
        try:
            if self._flusher is not None:
                await self._flusher
        finally:
            if self._client is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, self._client.close)
                self._client = None
            self._executor.shutdown(wait=False)

    def _running(self) -> bool:
        return self._flusher is not None and not self._flusher.done()

    def _enqueue(
        self, table: str, columns: tuple[str, ...], rows: list[list[Any]]
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        batch = self._batches.get((table, columns))
        if batch is None:
            batch = self._batches[(table, columns)] = _Batch(since=loop.time())
            self._wakeup.set()  # a new deadline, possibly earlier than the one being waited for
        batch.rows.extend(rows)
        if len(batch.rows) >= self._settings.max_batch_rows:
            self._wakeup.set()
        self._pending += len(rows)
        waiter = loop.create_future()
        batch.waiters.append(waiter)
        return waiter

    async def _flush_until_stopped(self) -> None:
        try:
            while (key := await self._next_due()) is not None:
                batch = self._batches.pop(key)
                outcome: SinkError | None = SinkError("the ClickHouse sink stopped mid-insert")
                try:
                    await self._insert(*key, batch.rows)
                    outcome = None
                except SinkError as error:
                    outcome = error
                finally:
                    _settle(batch.waiters, outcome)
                    self._pending -= len(batch.rows)
                    self._drained.set()
        finally:
            for batch in self._batches.values():
                _settle(batch.waiters, SinkError("the ClickHouse sink stopped before the insert"))
            self._batches.clear()
            self._pending = 0
            self._drained.set()

    async def _next_due(self) -> tuple[str, tuple[str, ...]] | None:
        """The key of the batch to insert next, oldest first; None once stopped and empty."""
        loop = asyncio.get_running_loop()
        delay = self._settings.max_delay_ms / 1000
        while True:
            now = loop.time()
            due = [
                (batch.since, key)
                for key, batch in self._batches.items()
                if self._stopping
                or len(batch.rows) >= self._settings.max_batch_rows
                or now >= batch.since + delay
            ]
            if due:
                return min(due)[1]
            if self._stopping:
                return None
            oldest = min((batch.since for batch in self._batches.values()), default=None)
            self._wakeup.clear()
            try:
                timeout = None if oldest is None else oldest + delay - now
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass

    async def _insert(self, table: str, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
        step = self._settings.max_batch_rows
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            insert = partial(self._client.insert, table, chunk, column_names=list(columns))
            await self._call(f"inserting {len(chunk)} rows into {table}", insert)
            self._inserts += 1

    async def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run a client call on the worker thread, retrying with exponential backoff.

        Transient failures (server unreachable, overloaded, table not there yet) are retried for
        as long as they last; permanent ones (see ``is_permanent``) raise SinkError after
        ``max_attempts_on_permanent_error`` attempts.
        """
        loop = asyncio.get_running_loop()
        backoff = self._settings.retry_initial_ms / 1000
        permanent_failures = 0
        while True:
            try:
                return await loop.run_in_executor(self._executor, call)
            except Exception as error:
                if is_permanent(error):
                    permanent_failures += 1
                    if permanent_failures >= self._settings.max_attempts_on_permanent_error:
                        raise SinkError(
                            f"{what} failed {permanent_failures} times, not retrying: {error}"
                        ) from error
                self._retries += 1
                # A worker lets one such line a minute through (its log limits).
                log.warning("%s failed, retrying in %.2fs: %s", what, backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.retry_max_ms / 1000)


def is_permanent(error: Exception) -> bool:
    """Whether retrying the same call cannot help: bad rows, unknown columns, bad schema."""
    if isinstance(error, DatabaseError) and error.code in PERMANENT_CODES:
        return True
    if isinstance(error, ProgrammingError | DataError | NotSupportedError):
        return True  # refused by the client before reaching the server
    # Connection failures and other server errors may pass; anything else is a bug in the rows.
    return not isinstance(error, DatabaseError | OSError)


def count_final(client: Client, table: str) -> int:
    """Rows in the table once replayed copies are collapsed: one per sorting key."""
    return int(client.command(f"SELECT count() FROM {quote_identifier(table)} FINAL"))


def _settle(waiters: list[asyncio.Future[None]], error: SinkError | None) -> None:
    for waiter in waiters:
        if waiter.done():  # its caller was cancelled; the rows were written regardless
            continue
        if error is None:
            waiter.set_result(None)
        else:
            # One exception per waiter: each caller's raise adds its own traceback.
            own = SinkError(*error.args)
            own.__cause__ = error.__cause__
            waiter.set_exception(own)


def _redacted(dsn: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", dsn)
