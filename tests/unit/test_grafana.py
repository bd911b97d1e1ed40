"""docker/grafana: the provisioned data source points at the compose ClickHouse, the board is
written from the registered domains before Grafana starts, and every panel's SQL runs on the
project's tables (the embedded engine) and returns its columns, with Grafana's macros replaced
as the ClickHouse plugin would replace them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from clickhouse_connect.driver.client import Client

import domains
from signalyard.cli import main
from store.connection import connect
from store.schema import create_tables
from streams.observability.grafana import board

GRAFANA = Path(__file__).resolve().parents[2] / "docker" / "grafana"
DOCKER_COMPOSE = GRAFANA.parent / "compose.yaml"
NOW = datetime.now(UTC).replace(microsecond=0)
FROM, TO = NOW - timedelta(hours=1), NOW + timedelta(minutes=1)
INTERVAL_S = 60

# The columns each panel must return, by title: what its visualisation draws.
EXPECTED_COLUMNS = {
    "Sentiment per ticker": ["t", "series", "value"],
    "High-risk tickets": ["t", "series", "value"],
    "Defect rate": ["t", "series", "value"],
    "Negative reviews and reviews not recommending": ["t", "series", "value"],
    "Throughput (events/s)": ["t", "domain", "events_per_s"],
    "Latency, ingest to scored (p50, p95)": ["t", "domain", "p50_ms", "p95_ms"],
    "Dead letters per source topic": ["t", "source_topic", "dead_letters"],
    "Accuracy: estimated without labels, and on feedback": ["t", "series", "accuracy", "n"],
    "Model versions": ["domain", "model_name", "model_version", "events", "last_scored"],
    "Latest alerts": ["ts", "domain", "entity", "rule", "severity", "model_version", "explanation"],
}


def dashboard() -> dict:
    return board()


def expand_macros(sql: str) -> str:
    """The ClickHouse data source's macros for the range [FROM, TO] and a 1-minute interval."""

    def moment(at: datetime) -> str:
        return f"toDateTime({int(at.timestamp())})"

    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        lambda m: f"{m[1]} >= {moment(FROM)} AND {m[1]} <= {moment(TO)}",
        sql,
    )
    sql = re.sub(
        r"\$__timeInterval\((\w+)\)",
        lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {INTERVAL_S} second)",
        sql,
    )
    sql = sql.replace("$__interval_s", str(INTERVAL_S))
    assert "$" not in sql, f"a macro this test does not know: {sql}"
    return sql


def rows() -> dict[str, list[dict]]:
    at = NOW - timedelta(minutes=5)
    scored = {"model_name": "m", "model_version": "v1", "batch_size": 1, "latency_ms": 12.5}
    scored |= {"ts": at, "scored_at": at, "confidence": 0.9}
    return {
        "news_scores": [
            {**scored, "event_id": "n1", "ticker": "ACME", "label": "negative",
             "p_negative": 0.8, "p_neutral": 0.1, "p_positive": 0.1, "sentiment": -0.7},
        ],
        "tickets_scores": [
            {**scored, "event_id": "t1", "customer_id": "c1", "intent": "lost_card",
             "top_intents": ["lost_card"], "top_probabilities": [0.9], "risk_score": 0.9,
             "risk_level": "high"},
        ],
        "sensors_scores": [
            {**scored, "event_id": "s1", "machine_id": "M1", "failure_probability": 0.95,
             "failure_mode": "tool_wear", "defect": True},
        ],
        "reviews_scores": [
            {**scored, "event_id": "r1", "product_id": "1078", "label": "negative",
             "p_negative": 0.8, "p_neutral": 0.1, "p_positive": 0.1, "sentiment": -0.7,
             "recommended": False},
        ],
        "feedback": [
            {"event_id": "n1", "domain": "news", "label": "negative", "labeler": "ana", "ts": at,
             "written_at": at, "predicted_label": "negative", "model_version": "v1",
             "input": "ACME falls", "event_ts": at},
        ],
        "deadletter": [
            {"source_topic": "news.raw", "partition": 0, "offset": 1, "reason": "not JSON",
             "payload": "{", "ts": at},
        ],
        "alerts": [
            {"alert_id": "a1", "ts": at, "domain": "sensors", "entity": "M1",
             "rule": "failure_streak", "severity": "critical", "evidence": "{}",
             "model_version": "v1", "written_at": at},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    client = connect(f"chdb://{tmp_path_factory.mktemp('grafana') / 'clickhouse'}")
    create_tables(client)
    for table, table_rows in rows().items():
        columns = list(table_rows[0])
        client.insert(table, [list(row.values()) for row in table_rows], column_names=columns)
    yield client
    client.close()


def panels() -> list[dict]:
    return dashboard()["panels"]


def test_every_panel_queries_the_provisioned_data_source() -> None:
    source = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text()
    )
    (datasource,) = source["datasources"]
    compose = yaml.safe_load(DOCKER_COMPOSE.read_text())
    server = compose["services"]["clickhouse"]["environment"]
    assert datasource["jsonData"]["host"] in compose["services"]
    assert datasource["jsonData"]["username"] == server["CLICKHOUSE_USER"]
    assert datasource["secureJsonData"]["password"] == server["CLICKHOUSE_PASSWORD"]
    assert {panel["title"] for panel in panels()} == set(EXPECTED_COLUMNS)
    for panel in panels():
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    grafana = compose["services"]["grafana"]
    mounted = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    assert set(mounted) == {"./grafana/provisioning", "grafana-dashboards"}
    # The board is written into the volume Grafana reads, by a service that ends first.
    writer = compose["services"]["grafana-board"]
    assert grafana["depends_on"]["grafana-board"]["condition"] == "service_completed_successfully"
    (volume,) = writer["volumes"]
    name, path = volume.split(":")
    assert name == "grafana-dashboards" and writer["command"][2].startswith(path + "/")
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "signalyard.yaml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == mounted["grafana-dashboards"]


def test_the_board_has_a_chart_per_domain_and_the_command_writes_it(tmp_path: Path) -> None:
    titles = [panel["title"] for panel in panels()]
    assert len(titles) == len(set(titles)) and len(titles) == len(EXPECTED_COLUMNS)
    for sql in (p["targets"][0]["rawSql"] for p in panels() if p["title"].startswith("Through")):
        assert all(f"{name}_scores" in sql for name in domains.names())
    out = tmp_path / "board" / "signalyard.json"
    main(["grafana", str(out)])
    assert json.loads(out.read_text()) == board()


@pytest.mark.parametrize("title", EXPECTED_COLUMNS)
def test_panel_sql_runs_on_the_tables_and_returns_its_columns(store: Client, title: str) -> None:
    (panel,) = [panel for panel in panels() if panel["title"] == title]
    (target,) = panel["targets"]
    result = store.query(expand_macros(target["rawSql"]))
    assert list(result.column_names) == EXPECTED_COLUMNS[title]
    assert result.result_rows, f"{title}: no rows for the rows inserted in its range"
