"""The ClickHouse tables, one DDL each.

Every table is a ReplacingMergeTree whose sorting key ends in the row's identity (event id,
alert id, ...), so a replayed row collapses into the one already written; queries that need
exact counts before a merge use ``FINAL``. Sorting keys start with the entity and time, which
is what the dashboards filter on.

Every table also remembers the hashes of its last ``DEDUPLICATION_WINDOW`` inserted blocks
(``non_replicated_deduplication_window``, what replicated tables do by default): an insert
retried after its reply was lost (the server wrote it, the client saw a timeout) is dropped
whole instead of written twice.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

import domains
from domains.base import Domain

DEDUPLICATION_WINDOW = 1000  # inserted blocks per table whose hashes are remembered
TRIGGERS_TABLE = "retrain_triggers"  # written by the retrain triggers, read by the next check


def _ddl(table: str, columns: list[tuple[str, str]], version: str, order_by: str) -> str:
    body = ",\n".join(f"    {name} {sql}" for name, sql in columns)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n{body}\n) "
        f"ENGINE = ReplacingMergeTree({version})\nORDER BY {order_by}"
    )


def domain_tables(domain: Domain) -> dict[str, str]:
    """The DDL of a domain's events, scores and backtest scores tables, made from its columns.

    A backtest's scores have the live table's columns behind the run id, so a run compares
    with the live scores column for column and replaying one run id again collapses.
    """
    key = f"{domain.entity}, ts, event_id"
    return {
        domain.events_table: _ddl(
            domain.events_table, domain.events_columns_sql(), "ingested_at", f"({key})"
        ),
        domain.scores_table: _ddl(
            domain.scores_table, domain.scores_columns_sql(), "scored_at", f"({key})"
        ),
        f"backtest_{domain.scores_table}": f"""
            CREATE TABLE IF NOT EXISTS backtest_{domain.scores_table}
            ENGINE = ReplacingMergeTree(scored_at)
            ORDER BY (run_id, {key})
            EMPTY AS SELECT CAST('' AS String) AS run_id, * FROM {domain.scores_table}
        """,
    }


TABLES: dict[str, str] = {
    **{
        name: ddl
        for domain in domains.all()
        for name, ddl in domain_tables(domain).items()
        if not name.startswith("backtest_")
    },
    "alerts": """
        CREATE TABLE IF NOT EXISTS alerts (
            alert_id String,
            ts DateTime64(3, 'UTC'),
            domain LowCardinality(String),
            entity String,
            rule LowCardinality(String),
            severity LowCardinality(String),
            evidence String,
            model_version LowCardinality(String),
            written_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at)
        ORDER BY (domain, entity, ts, alert_id)
    """,
    # Why a model scored an event as it did (models.serving.explanations): written for the
    # events that trigger alerts; ``attributions`` is JSON (words or columns with their scores).
    "explanations": """
        CREATE TABLE IF NOT EXISTS explanations (
            event_id String,
            domain LowCardinality(String),
            model_version LowCardinality(String),
            label String,
            probability Float64,
            method LowCardinality(String),
            delta Float64,
            short String,
            attributions String,
            explained_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(explained_at)
        ORDER BY (domain, event_id, model_version)
    """,
    # A label joined to its scored event: what the model saw (``input``: the text, or the
    # reading as JSON), what it predicted and which version did; ``ts`` is when it was labeled.
    "feedback": """
        CREATE TABLE IF NOT EXISTS feedback (
            event_id String,
            domain LowCardinality(String),
            label LowCardinality(String),
            labeler String,
            ts DateTime64(3, 'UTC'),
            written_at DateTime64(3, 'UTC'),
            predicted_label LowCardinality(String),
            model_version LowCardinality(String),
            input String,
            event_ts DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(written_at)
        ORDER BY (domain, event_id, labeler)
    """,
    # One row per fired retrain trigger; ``labels_total`` is the domain's label count then,
    # which the next count trigger counts from.
    TRIGGERS_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {TRIGGERS_TABLE} (
            request_id String,
            ts DateTime64(3, 'UTC'),
            domain LowCardinality(String),
            reason LowCardinality(String),
            detail String,
            live_version LowCardinality(String),
            labels_total UInt64
        ) ENGINE = ReplacingMergeTree(ts)
        ORDER BY (domain, ts, request_id)
    """,
    "deadletter": """
        CREATE TABLE IF NOT EXISTS deadletter (
            source_topic LowCardinality(String),
            partition UInt32,
            offset UInt64,
            reason String,
            payload String,
            ts DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(ts)
        ORDER BY (source_topic, partition, offset)
    """,
    # One row per replay (``signalyard replay``); the scores of a run are in the tables below.
    "backtest_runs": """
        CREATE TABLE IF NOT EXISTS backtest_runs (
            run_id String,
            domain LowCardinality(String),
            topic String,
            from_ts DateTime64(3, 'UTC'),
            to_ts DateTime64(3, 'UTC'),
            model_name LowCardinality(String),
            model_version LowCardinality(String),
            batch_size UInt32,
            records UInt64,
            skipped UInt64,
            events UInt64,
            dead UInt64,
            dead_kinds Map(String, UInt64),
            started_at DateTime64(3, 'UTC'),
            finished_at DateTime64(3, 'UTC'),
            model_sha256 LowCardinality(String)
        ) ENGINE = ReplacingMergeTree(finished_at)
        ORDER BY run_id
    """,
    **{
        name: ddl
        for domain in domains.all()
        for name, ddl in domain_tables(domain).items()
        if name.startswith("backtest_")
    },
}


# Columns added after a table first shipped, so that a store made by an older version gains them.
ADDED_COLUMNS: dict[str, list[str]] = {
    **{
        table: [
            "confidence Float32",
            "model_sha256 LowCardinality(String)",
            "source_topic LowCardinality(String)",
            "source_partition Int32 DEFAULT -1",
            "source_offset Int64 DEFAULT -1",
            "processing_guarantee LowCardinality(String)",
        ]
        for domain in domains.all()
        for table in (domain.scores_table, f"backtest_{domain.scores_table}")
    },
    "backtest_runs": ["model_sha256 LowCardinality(String)"],
    "feedback": [
        "predicted_label LowCardinality(String)",
        "model_version LowCardinality(String)",
        "input String",
        "event_ts DateTime64(3, 'UTC')",
    ],
}


def create_tables(client: Client) -> list[str]:
    """Create every missing table and column; return the names of the tables that exist."""
    for ddl in TABLES.values():
        client.command(ddl)
    for table, columns in ADDED_COLUMNS.items():
        for column in columns:
            client.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")
    for table in TABLES:
        # Here rather than in the DDL, so that tables made by older versions get it too.
        client.command(
            f"ALTER TABLE {table} MODIFY SETTING "
            f"non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
        )
    existing = {row[0] for row in client.query("SHOW TABLES").result_rows}
    return [name for name in TABLES if name in existing]
