"""Read-only queries: what is refused up front, and ``signalyard sql`` on a store no worker
holds (opened directly) with the rows it holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from config.settings import QuerySettings
from signalyard.cli import main
from store.connection import connect
from store.readonly import QueryError, read_statement, run_read_only
from store.schema import create_tables


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "  select 1;  ",
        "WITH 2 AS x SELECT x",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "-- the count\nSELECT count() FROM alerts",
        "/* why */ SHOW TABLES",
        "DESCRIBE TABLE alerts",
        "EXPLAIN SELECT 1",
    ],
)
def test_reads_pass(sql: str) -> None:
    assert read_statement(sql) == sql.strip().rstrip(";").strip()


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO alerts VALUES",
        "drop table alerts",
        "/* SELECT */ TRUNCATE alerts",
        "SELECT 1 INTO  outfile '/tmp/x.csv'",
        "",
        ";",
    ],
)
def test_anything_else_is_refused(sql: str) -> None:
    with pytest.raises(QueryError):
        read_statement(sql)


def test_sql_opens_a_store_no_worker_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}")
    create_tables(client)
    client.command("INSERT INTO feedback (event_id, domain, label) VALUES ('e1', 'news', 'up')")
    client.close()
    with socket.socket() as sock:  # a port nothing listens on: no worker to go through
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path))
    monkeypatch.setenv("SIGNALYARD_PIPELINE__WEB_PORT", str(port))
    main(["sql", "SELECT event_id, label FROM feedback", "--format", "csv"])
    assert capsys.readouterr().out == "event_id,label\ne1,up\n"


LIMITS = QuerySettings(
    max_execution_time_s=30,
    max_memory_usage_bytes=1 << 30,
    max_rows_to_read=10_000_000,
    max_bytes_to_read=1 << 33,
    max_result_rows=1000,
    max_result_bytes=1 << 27,
)


@pytest.mark.parametrize(
    ("sql", "limits", "error"),
    [
        # The 30-million-row answer that grew a worker to 13 GB: refused by ClickHouse.
        ("SELECT number, toString(number) FROM numbers(30000000)", LIMITS, "max_rows_to_read"),
        ("SELECT number FROM numbers(5000)", LIMITS, "Limit for result exceeded"),
        (
            "SELECT groupArray(toString(number)) FROM numbers(5000000)",
            LIMITS.model_copy(update={"max_memory_usage_bytes": 50_000_000}),
            "memory limit exceeded",
        ),
        (
            "SELECT number FROM numbers(100) WHERE sleepEachRow(0.03) = 0",
            LIMITS.model_copy(update={"max_execution_time_s": 1}),
            "TIMEOUT_EXCEEDED",
        ),
    ],
)
def test_a_query_over_a_limit_fails_with_clickhouse_s_error_in_one_line(
    tmp_path: Path, sql: str, limits: QuerySettings, error: str
) -> None:
    client = connect(f"chdb://{tmp_path / 'clickhouse'}")
    try:
        assert len(run_read_only(client, "SELECT number FROM numbers(1000)", limits).rows) == 1000
        with pytest.raises(QueryError) as refused:
            run_read_only(client, sql, limits)
    finally:
        client.close()
    assert error.lower() in str(refused.value).lower()
    assert "\n" not in str(refused.value)


def test_the_limits_are_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path))
    monkeypatch.setenv("SIGNALYARD_QUERIES__MAX_RESULT_ROWS", "10")
    with pytest.raises(SystemExit) as exit_info:
        main(["sql", "SELECT number FROM numbers(11)"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert "Limit for result exceeded, max rows: 10" in err and "\n" not in err
