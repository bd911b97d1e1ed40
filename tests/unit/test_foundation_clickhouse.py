"""The embedded ClickHouse: tables provision idempotently and replayed rows collapse."""

from __future__ import annotations

from datetime import UTC, datetime

from config.settings import Settings
from store.connection import connect
from store.schema import TABLES, create_tables


def test_tables_are_created_once_and_replayed_rows_read_back_once(settings: Settings) -> None:
    client = connect(settings.clickhouse_dsn)
    try:
        assert create_tables(client) == list(TABLES)
        assert create_tables(client) == list(TABLES)
        ddl_before = client.query(
            "SELECT name, create_table_query FROM system.tables "
            "WHERE database = currentDatabase() ORDER BY name"
        ).result_rows
        now = datetime.now(UTC)
        columns = [
            "event_id",
            "ts",
            "machine_id",
            "failure_probability",
            "failure_mode",
            "defect",
            "model_name",
            "model_version",
            "batch_size",
            "latency_ms",
            "scored_at",
        ]
        rows = [
            [f"evt-{n}", now, f"M{n % 3}", 0.1 * n, "none", False, "mlp", "v1", 4, 12.5, now]
            for n in range(4)
        ]
        client.insert("sensors_scores", rows, column_names=columns)
        client.insert("sensors_scores", rows[:3], column_names=columns)  # a replay
        total = client.query("SELECT count() FROM sensors_scores FINAL").result_rows[0][0]
        distinct = client.query("SELECT uniqExact(event_id) FROM sensors_scores FINAL").result_rows[
            0
        ][0]
        assert (total, distinct) == (4, 4)
        create_tables(client)
        ddl_after = client.query(
            "SELECT name, create_table_query FROM system.tables "
            "WHERE database = currentDatabase() ORDER BY name"
        ).result_rows
        assert ddl_after == ddl_before
    finally:
        client.close()
