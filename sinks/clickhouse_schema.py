"""The ClickHouse tables, one DDL each.

Every table is a ReplacingMergeTree whose sorting key ends in the row's identity (event id,
alert id, ...), so a replayed row collapses into the one already written; queries that need
exact counts before a merge use ``FINAL``. Sorting keys start with the entity and time, which
is what the dashboards filter on.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

TABLES: dict[str, str] = {
    "news_events": """
        CREATE TABLE IF NOT EXISTS news_events (
            event_id String,
            ts DateTime64(3, 'UTC'),
            ticker LowCardinality(String),
            tickers Array(String),
            source LowCardinality(String),
            headline String,
            body String,
            ingested_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(ingested_at)
        ORDER BY (ticker, ts, event_id)
    """,
    "news_scores": """
        CREATE TABLE IF NOT EXISTS news_scores (
            event_id String,
            ts DateTime64(3, 'UTC'),
            ticker LowCardinality(String),
            label LowCardinality(String),
            p_negative Float32,
            p_neutral Float32,
            p_positive Float32,
            sentiment Float32,
            model_name LowCardinality(String),
            model_version LowCardinality(String),
            batch_size UInt32,
            latency_ms Float64,
            scored_at DateTime64(3, 'UTC'),
            confidence Float32
        ) ENGINE = ReplacingMergeTree(scored_at)
        ORDER BY (ticker, ts, event_id)
    """,
    "tickets_events": """
        CREATE TABLE IF NOT EXISTS tickets_events (
            event_id String,
            ts DateTime64(3, 'UTC'),
            customer_id String,
            channel LowCardinality(String),
            subject String,
            text String,
            ingested_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(ingested_at)
        ORDER BY (customer_id, ts, event_id)
    """,
    "tickets_scores": """
        CREATE TABLE IF NOT EXISTS tickets_scores (
            event_id String,
            ts DateTime64(3, 'UTC'),
            customer_id String,
            intent LowCardinality(String),
            top_intents Array(String),
            top_probabilities Array(Float32),
            risk_score Float32,
            risk_level LowCardinality(String),
            model_name LowCardinality(String),
            model_version LowCardinality(String),
            batch_size UInt32,
            latency_ms Float64,
            scored_at DateTime64(3, 'UTC'),
            confidence Float32
        ) ENGINE = ReplacingMergeTree(scored_at)
        ORDER BY (customer_id, ts, event_id)
    """,
    "sensors_events": """
        CREATE TABLE IF NOT EXISTS sensors_events (
            event_id String,
            ts DateTime64(3, 'UTC'),
            machine_id String,
            machine_type LowCardinality(String),
            air_temp_k Float32,
            process_temp_k Float32,
            rpm Float32,
            torque_nm Float32,
            tool_wear_min Float32,
            message String,
            ingested_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(ingested_at)
        ORDER BY (machine_id, ts, event_id)
    """,
    "sensors_scores": """
        CREATE TABLE IF NOT EXISTS sensors_scores (
            event_id String,
            ts DateTime64(3, 'UTC'),
            machine_id String,
            failure_probability Float32,
            failure_mode LowCardinality(String),
            defect Bool,
            model_name LowCardinality(String),
            model_version LowCardinality(String),
            batch_size UInt32,
            latency_ms Float64,
            scored_at DateTime64(3, 'UTC'),
            confidence Float32
        ) ENGINE = ReplacingMergeTree(scored_at)
        ORDER BY (machine_id, ts, event_id)
    """,
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
    # Why a model scored an event as it did (models.explanations): written for the events that
    # trigger alerts; ``attributions`` is JSON (words or columns with their scores).
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
    "retrain_triggers": """
        CREATE TABLE IF NOT EXISTS retrain_triggers (
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
            finished_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(finished_at)
        ORDER BY run_id
    """,
    # A backtest's scores have the live table's columns behind the run id, so a run compares
    # with the live scores column for column and replaying one run id again collapses.
    **{
        f"backtest_{domain}_scores": f"""
            CREATE TABLE IF NOT EXISTS backtest_{domain}_scores
            ENGINE = ReplacingMergeTree(scored_at)
            ORDER BY (run_id, {entity}, ts, event_id)
            EMPTY AS SELECT CAST('' AS String) AS run_id, * FROM {domain}_scores
        """
        for domain, entity in (
            ("news", "ticker"),
            ("tickets", "customer_id"),
            ("sensors", "machine_id"),
        )
    },
}


# Columns added after a table first shipped, so that a store made by an older version gains them.
ADDED_COLUMNS: dict[str, list[str]] = {
    **{
        table: ["confidence Float32"]
        for domain in ("news", "tickets", "sensors")
        for table in (f"{domain}_scores", f"backtest_{domain}_scores")
    },
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
    existing = {row[0] for row in client.query("SHOW TABLES").result_rows}
    return [name for name in TABLES if name in existing]
