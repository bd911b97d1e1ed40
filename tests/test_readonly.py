"""Read-only queries: what is refused up front, and ``signalyard sql`` on a store no worker
holds (opened directly) with the rows it holds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from signalyard.cli import main
from sinks.clickhouse import connect
from sinks.clickhouse_schema import create_tables
from sinks.readonly import QueryError, read_statement


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
