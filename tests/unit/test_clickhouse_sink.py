"""The ClickHouse sink against the real embedded engine (chdb) in a private directory.

Slow or failing inserts come from real server conditions (a table that does not exist yet,
an unknown column, a port nobody listens on), never from a stand-in for ClickHouse.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from config.settings import SettingsError, SinkSettings, load_settings
from store.connection import connect
from store.schema import TABLES, create_tables
from store.sink import ClickHouseSink, SinkError, count_final

FAST = {
    "max_batch_rows": 100,
    "max_delay_ms": 20,
    "max_pending_rows": 1000,
    "retry_initial_ms": 10,
    "retry_max_ms": 50,
    "max_attempts_on_permanent_error": 3,
}


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def client(dsn: str) -> Iterator[Client]:
    """A second client on the sink's engine, for setting up and reading back."""
    client = connect(dsn)
    create_tables(client)
    yield client
    client.close()  # the process can open another directory only once every client is closed


def score(event_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "event_id": event_id,
        "ts": now,
        "machine_id": "m-7",
        "failure_probability": 0.25,
        "failure_mode": "tool wear",
        "defect": True,
        "model_name": "defect",
        "model_version": "v1",
        "batch_size": 8,
        "latency_ms": 3.5,
        "scored_at": now,
    }


def with_sink(dsn: str, scenario: Any, **settings: int) -> None:
    """Run ``scenario(sink)`` on a started sink, then stop the sink."""

    async def main() -> None:
        sink = ClickHouseSink(dsn, SinkSettings(**{**FAST, **settings}))
        await sink.start()
        try:
            await scenario(sink)
        finally:
            await sink.stop()

    asyncio.run(main())


async def soon(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Start a coroutine and let it run up to its first real wait."""
    task = asyncio.create_task(coroutine)
    await asyncio.sleep(0.2)
    return task


def test_a_replayed_event_counts_once_and_types_round_trip(dsn: str, client: Client) -> None:
    first = [score(f"e{i}") for i in range(10)]
    # A replayed event keeps its time (part of the key) and is scored again later.
    replay = [{**row, "scored_at": datetime.now(UTC)} for row in first]
    tickets = {
        "event_id": "t1",
        "ts": datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC),
        "customer_id": "c-1",
        "intent": "lost_or_stolen_card",
        "top_intents": ["lost_or_stolen_card", "card_not_working"],
        "top_probabilities": [0.75, 0.125],
        "risk_score": 0.5,
        "risk_level": "high",
        "model_name": "intent",
        "model_version": "v2",
        "batch_size": 1,
        "latency_ms": 9.0,
        "scored_at": datetime.now(UTC),
    }

    async def scenario(sink: ClickHouseSink) -> None:
        await sink.write("sensors_scores", first)
        await sink.write("sensors_scores", replay)
        await sink.write("tickets_scores", [tickets])

    with_sink(dsn, scenario)
    assert count_final(client, "sensors_scores") == 10
    assert client.command("SELECT countIf(defect) FROM sensors_scores FINAL") == 10
    rows = client.query("SELECT ts, top_intents, top_probabilities FROM tickets_scores").result_rows
    ts = datetime(2026, 3, 1, 12, 30, 15, 123000)  # read back naive, in UTC
    assert rows == [(ts, tickets["top_intents"], [0.75, 0.125])]


def test_an_insert_whose_reply_was_lost_is_written_once(dsn: str, client: Client) -> None:
    """The first insert reaches the engine, then its caller sees the connection drop, as when
    a server's reply is lost: the engine recognizes the retried block and drops it."""

    async def scenario(sink: ClickHouseSink) -> None:
        engine_insert = sink._client.insert  # type: ignore[union-attr]
        replies: list[str] = []

        def insert(*args: Any, **kwargs: Any) -> Any:
            summary = engine_insert(*args, **kwargs)
            replies.append("lost" if not replies else "received")
            if replies[-1] == "lost":
                raise ConnectionResetError("the reply was lost")
            return summary

        sink._client.insert = insert  # type: ignore[union-attr, method-assign]
        await sink.write("sensors_scores", [score(f"e{i}") for i in range(10)])
        assert replies == ["lost", "received"]

    with_sink(dsn, scenario)
    # Without FINAL: the rows are there once, not waiting for a merge to collapse them.
    assert client.command("SELECT count() FROM sensors_scores") == 10


def test_concurrent_writers_share_inserts(dsn: str, client: Client) -> None:
    async def scenario(sink: ClickHouseSink) -> None:
        writers = [
            sink.write("sensors_scores", [score(f"w{w}-{i}") for i in range(10)]) for w in range(50)
        ]
        await asyncio.gather(*writers)
        # 500 rows from 50 writers, at most 100 rows an insert: 5 inserts, not 50.
        assert sink.inserts == 5

    with_sink(dsn, scenario, max_batch_rows=100, max_delay_ms=1000)
    assert count_final(client, "sensors_scores") == 500


def test_a_small_batch_is_inserted_after_max_delay(dsn: str, client: Client) -> None:
    async def scenario(sink: ClickHouseSink) -> None:
        started = time.monotonic()
        await sink.write("sensors_scores", [score("a"), score("b")])
        waited = time.monotonic() - started
        assert 0.25 <= waited < 2.0  # it waited for more rows, then went on its own
        assert count_final(client, "sensors_scores") == 2
        assert sink.inserts == 1

    with_sink(dsn, scenario, max_batch_rows=1000, max_delay_ms=300)


def test_writers_wait_when_too_many_rows_are_pending(dsn: str, client: Client) -> None:
    client.command("DROP TABLE sensors_scores")  # inserts fail, so rows pile up

    async def scenario(sink: ClickHouseSink) -> None:
        first = await soon(sink.write("sensors_scores", [score(f"a{i}") for i in range(10)]))
        second = await soon(sink.write("sensors_scores", [score(f"b{i}") for i in range(5)]))
        try:
            assert not first.done() and not second.done()
            assert sink.pending_rows == 10  # the second writer's rows wait outside the sink
        finally:
            client.command(TABLES["sensors_scores"])  # else stop() would retry forever
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        assert sink.pending_rows == 0

    with_sink(dsn, scenario, max_batch_rows=10, max_pending_rows=10)
    assert count_final(client, "sensors_scores") == 15


def test_an_unavailable_table_is_retried_until_it_appears(dsn: str, client: Client) -> None:
    client.command("DROP TABLE sensors_scores")

    async def scenario(sink: ClickHouseSink) -> None:
        write = await soon(sink.write("sensors_scores", [score(f"r{i}") for i in range(30)]))
        assert not write.done()
        client.command(TABLES["sensors_scores"])
        await asyncio.wait_for(write, 5)
        assert sink.retries > 0

    with_sink(dsn, scenario)
    assert count_final(client, "sensors_scores") == 30


def test_stop_can_give_up_on_an_unavailable_server(dsn: str, client: Client) -> None:
    client.command("DROP TABLE sensors_scores")

    async def main() -> None:
        sink = ClickHouseSink(dsn, SinkSettings(**FAST))
        await sink.start()
        write = await soon(sink.write("sensors_scores", [score("s")]))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sink.stop(), 0.3)
        with pytest.raises(SinkError, match="stopped"):
            await write

    asyncio.run(main())


def test_an_unknown_column_is_raised_to_the_writer(dsn: str, client: Client) -> None:
    async def scenario(sink: ClickHouseSink) -> None:
        with pytest.raises(SinkError, match=r"sensors_scores.*3 times.*'bogus'"):
            await sink.write("sensors_scores", [{**score("x"), "bogus": 1}])
        assert sink.retries == 2
        await sink.write("sensors_scores", [score("y")])  # the sink still works

    with_sink(dsn, scenario)
    assert count_final(client, "sensors_scores") == 1


def test_rows_with_different_columns_are_refused(dsn: str, client: Client) -> None:
    async def scenario(sink: ClickHouseSink) -> None:
        with pytest.raises(ValueError, match="same columns"):
            await sink.write("sensors_scores", [score("x"), {"event_id": "y"}])

    with_sink(dsn, scenario)


def test_an_unreachable_server_is_retried_not_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        sink = ClickHouseSink(f"http://127.0.0.1:{port}", SinkSettings(**FAST))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sink.start(), 0.5)
        assert sink.retries > 2
        await sink.stop()

    asyncio.run(main())


def test_sink_settings_load_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().sink.max_batch_rows > 0
    monkeypatch.setenv("SIGNALYARD_SINK__MAX_BATCH_ROWS", "0")
    with pytest.raises(SettingsError, match="SIGNALYARD_SINK__MAX_BATCH_ROWS"):
        load_settings()
