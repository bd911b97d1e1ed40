"""The Grafana board over the ClickHouse tables, made from the registered domains.

    board() -> dict   # the dashboard JSON Grafana provisions (docker/compose.yaml writes it)

Panels run the dashboard page's queries (``store.panels.GRAFANA_PANELS``) with the ClickHouse
data source's macros as the clock: ``$__timeInterval(column)`` buckets, ``$__timeFilter(column)``
keeps the period shown. One chart per domain (``Domain.panel``), then throughput, latency,
dead letters, accuracy, the model versions and the latest alerts.
"""

from __future__ import annotations

from typing import Any

import domains
from store.panels import GRAFANA_PANELS

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "signalyard-clickhouse"}
TIME_SERIES, TABLE = 0, 1  # the data source's query formats


def _panel(title: str, sql: str, unit: str | None = None, table: bool = False) -> dict[str, Any]:
    return {
        "type": "table" if table else "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "targets": [
            {
                "refId": "A",
                "datasource": DATASOURCE,
                "editorType": "sql",
                "format": TABLE if table else TIME_SERIES,
                "queryType": "table" if table else "timeseries",
                "rawSql": sql,
            }
        ],
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {} if table else {"legend": {"displayMode": "list", "placement": "bottom"}},
    }


def panels() -> list[dict[str, Any]]:
    charts = [
        _panel(
            domain.panel.title.split(" (")[0],
            GRAFANA_PANELS[domain.name],
            "percentunit" if domain.panel.percent else None,
        )
        for domain in domains.all()
    ]
    return [
        *charts,
        _panel("Throughput (events/s)", GRAFANA_PANELS["throughput"], "ops"),
        _panel("Latency, ingest to scored (p50, p95)", GRAFANA_PANELS["latency"], "ms"),
        _panel("Dead letters per source topic", GRAFANA_PANELS["dead_letters"]),
        _panel(
            "Accuracy: estimated without labels, and on feedback",
            GRAFANA_PANELS["accuracy"],
            "percentunit",
        ),
        _panel("Model versions", GRAFANA_PANELS["versions"], table=True),
        _panel("Latest alerts", GRAFANA_PANELS["alerts"], table=True),
    ]


def board() -> dict[str, Any]:
    """The dashboard JSON: panels two to a row, the wide accuracy chart on a row of its own."""
    placed, x, y = [], 0, 0
    for number, panel in enumerate(panels(), start=1):
        width = 24 if panel["title"].startswith("Accuracy") else 12
        if x + width > 24:
            x, y = 0, y + 8
        placed.append({**panel, "gridPos": {"x": x, "y": y, "w": width, "h": 8}, "id": number})
        x += width
    return {
        "uid": "signalyard",
        "title": "Signalyard",
        "tags": ["signalyard"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": placed,
    }
