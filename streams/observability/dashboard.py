"""The data behind the dashboard page: fixed read-only queries over the last minutes.

Every panel is one query on the live tables (``FINAL``, so replayed events count once),
bucketed by event time; the page (``dashboard.html``) draws whatever the queries return.
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any

from sinks.readonly import ReadOnlyStore

WINDOW = "INTERVAL 15 MINUTE"
BUCKET = "toStartOfInterval(ts, INTERVAL 10 SECOND)"

PANELS: dict[str, str] = {
    # The eight tickers with the most news in the window.
    "sentiment": f"""
        SELECT {BUCKET} AS t, ticker, avg(sentiment) AS sentiment, count() AS events
        FROM news_scores FINAL
        WHERE ts >= now() - {WINDOW} AND ticker IN (
            SELECT ticker FROM news_scores FINAL WHERE ts >= now() - {WINDOW}
            GROUP BY ticker ORDER BY count() DESC LIMIT 8)
        GROUP BY t, ticker ORDER BY t, ticker""",
    "risk": f"""
        SELECT {BUCKET} AS t, avg(risk_level = 'high') AS high_risk_share,
            avg(risk_score) AS mean_risk, count() AS events
        FROM tickets_scores FINAL WHERE ts >= now() - {WINDOW} GROUP BY t ORDER BY t""",
    "defects": f"""
        SELECT {BUCKET} AS t, avg(defect) AS defect_rate,
            avg(failure_probability) AS mean_failure_probability, count() AS events
        FROM sensors_scores FINAL WHERE ts >= now() - {WINDOW} GROUP BY t ORDER BY t""",
    "throughput": f"""
        SELECT toStartOfInterval(scored_at, INTERVAL 10 SECOND) AS t, domain,
            count() / 10 AS events_per_s, quantile(0.5)(latency_ms) AS p50_ms,
            quantile(0.95)(latency_ms) AS p95_ms
        FROM (
            SELECT 'news' AS domain, scored_at, latency_ms FROM news_scores FINAL
            WHERE scored_at >= now() - {WINDOW}
            UNION ALL SELECT 'tickets', scored_at, latency_ms FROM tickets_scores FINAL
            WHERE scored_at >= now() - {WINDOW}
            UNION ALL SELECT 'sensors', scored_at, latency_ms FROM sensors_scores FINAL
            WHERE scored_at >= now() - {WINDOW})
        GROUP BY t, domain ORDER BY t, domain""",
    # Accuracy per minute: estimated from the calibrated confidence of every result (rows stored
    # before the column existed read 0 and are left out), and measured on the feedback labels.
    # Sensors are left out: a defect flag is right on nearly every reading, failing or not.
    "accuracy": f"""
        SELECT t, series, accuracy, n FROM (
            SELECT toStartOfInterval(scored_at, INTERVAL 1 MINUTE) AS t,
                'news estimated' AS series, avg(confidence) AS accuracy, count() AS n
            FROM news_scores FINAL WHERE scored_at >= now() - {WINDOW} AND confidence > 0
            GROUP BY t
            UNION ALL SELECT toStartOfInterval(scored_at, INTERVAL 1 MINUTE) AS t,
                'tickets estimated', avg(confidence), count()
            FROM tickets_scores FINAL WHERE scored_at >= now() - {WINDOW} AND confidence > 0
            GROUP BY t
            UNION ALL SELECT toStartOfInterval(written_at, INTERVAL 1 MINUTE) AS t,
                concat(domain, ' on feedback'), avg(label = predicted_label), count()
            FROM feedback FINAL WHERE written_at >= now() - {WINDOW} AND domain != 'sensors'
            GROUP BY t, domain)
        ORDER BY t, series""",
    "versions": f"""
        SELECT domain, model_version, count() AS events FROM (
            SELECT 'news' AS domain, model_version FROM news_scores FINAL
            WHERE ts >= now() - {WINDOW}
            UNION ALL SELECT 'tickets', model_version FROM tickets_scores FINAL
            WHERE ts >= now() - {WINDOW}
            UNION ALL SELECT 'sensors', model_version FROM sensors_scores FINAL
            WHERE ts >= now() - {WINDOW})
        GROUP BY domain, model_version ORDER BY domain, model_version""",
    "alerts": """
        SELECT ts, domain, entity, rule, severity, model_version,
            JSONExtractString(evidence, 'explanation') AS explanation
        FROM alerts FINAL ORDER BY ts DESC LIMIT 20""",
}


def page() -> str:
    """The dashboard page: one self-contained HTML file, nothing fetched from elsewhere."""
    return files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


async def panel_data(store: ReadOnlyStore) -> dict[str, Any]:
    """Every panel's columns and rows, keyed by panel name."""
    results = await asyncio.gather(*(store.query(sql) for sql in PANELS.values()))
    return {name: result.to_json() for name, result in zip(PANELS, results, strict=True)}
