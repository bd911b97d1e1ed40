"""The data behind the dashboard page: fixed read-only queries over the last minutes.

Every panel is one query on the live tables (``FINAL``, so replayed events count once),
bucketed by event time; the page (``dashboard.html``) draws whatever the queries return.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from importlib.resources import files
from typing import Any

import domains
from models.tasks import TEXT_TASKS
from sinks.readonly import ReadOnlyStore

WINDOW = "INTERVAL 15 MINUTE"
BUCKET = "toStartOfInterval(ts, INTERVAL 10 SECOND)"


def _union(select: str, table: str, time: str) -> str:
    """``select`` over every domain's ``table`` (a format of the domain's name) in the window,
    one after the other; ``{name}`` in ``select`` is the domain's name as a string."""
    return " UNION ALL ".join(
        f"SELECT {select.format(name=f'{domain.name!r}')} FROM {table.format(domain.name)} "
        f"FINAL WHERE {time} >= now() - {WINDOW}"
        for domain in domains.all()
    )


def _domain_panels() -> dict[str, str]:
    return {
        domain.name: domain.panel.sql.format(window=WINDOW, bucket=BUCKET)
        for domain in domains.all()
    }


# The text domains' results carry a calibrated confidence; a defect flag is right on nearly
# every reading, failing or not, so the defect models are left out of the accuracy panel.
_ESTIMATED = [domain for domain in domains.all() if domain.task in TEXT_TASKS]

PANELS: dict[str, str] = {
    **_domain_panels(),
    "throughput": f"""
        SELECT toStartOfInterval(scored_at, INTERVAL 10 SECOND) AS t, domain,
            count() / 10 AS events_per_s, quantile(0.5)(latency_ms) AS p50_ms,
            quantile(0.95)(latency_ms) AS p95_ms
        FROM ({_union("{name} AS domain, scored_at, latency_ms", "{}_scores", "scored_at")})
        GROUP BY t, domain ORDER BY t, domain""",
    # Accuracy per minute: estimated from the calibrated confidence of every result (rows stored
    # before the column existed read 0 and are left out), and measured on the feedback labels.
    "accuracy": f"""
        SELECT t, series, accuracy, n FROM (
            {
        " UNION ALL ".join(
            f"SELECT toStartOfInterval(scored_at, INTERVAL 1 MINUTE) AS t, "
            f"'{domain.name} estimated' AS series, avg(confidence) AS accuracy, count() AS n "
            f"FROM {domain.scores_table} FINAL "
            f"WHERE scored_at >= now() - {WINDOW} AND confidence > 0 GROUP BY t"
            for domain in _ESTIMATED
        )
    }
            UNION ALL SELECT toStartOfInterval(written_at, INTERVAL 1 MINUTE) AS t,
                concat(domain, ' on feedback'), avg(label = predicted_label), count()
            FROM feedback FINAL WHERE written_at >= now() - {WINDOW}
                AND domain IN ({", ".join(repr(domain.name) for domain in _ESTIMATED)})
            GROUP BY t, domain)
        ORDER BY t, series""",
    "versions": f"""
        SELECT domain, model_version, count() AS events
        FROM ({_union("{name} AS domain, model_version", "{}_scores", "ts")})
        GROUP BY domain, model_version ORDER BY domain, model_version""",
    "alerts": """
        SELECT ts, domain, entity, rule, severity, model_version,
            JSONExtractString(evidence, 'explanation') AS explanation
        FROM alerts FINAL ORDER BY ts DESC LIMIT 20""",
}


def charts() -> list[dict[str, Any]]:
    """Each domain's chart as the page draws it: the panel it reads, title and axis."""
    return [{"panel": domain.name, **asdict(domain.panel), "sql": None} for domain in domains.all()]


def page() -> str:
    """The dashboard page: one self-contained HTML file, nothing fetched from elsewhere."""
    return files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


async def panel_data(store: ReadOnlyStore) -> dict[str, Any]:
    """Every panel's columns and rows, keyed by panel name."""
    results = await asyncio.gather(*(store.query(sql) for sql in PANELS.values()))
    return {name: result.to_json() for name, result in zip(PANELS, results, strict=True)}
