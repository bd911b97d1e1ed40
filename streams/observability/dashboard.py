"""The data behind the dashboard page: fixed read-only queries over the last minutes.

Every panel is one query on the live tables (``FINAL``, so replayed events count once),
bucketed by event time; the page (``dashboard.html``) draws whatever the queries return. Each
registered domain has its own chart (``Domain.panel``); throughput, latency, accuracy and the
model versions run over every domain's scores. The Grafana board (``grafana.py``) is made of
the same queries with Grafana's time macros as the clock.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Any

import domains
from models.tasks import TEXT_TASKS
from store.readonly import ReadOnlyStore


@dataclass(frozen=True)
class Clock:
    """How a query buckets a time column and keeps the rows of the period shown: ``bucket``
    and ``since`` are formats of the column's name."""

    bucket: str
    since: str

    def domain_chart(self, name: str) -> str:
        """The SQL of a domain's chart, with its ``{bucket}`` and ``{in_window}`` filled in."""
        return domains.get(name).panel.sql.format(
            bucket=self.bucket.format("ts"), in_window=self.since.format("ts")
        )

    def over_scores(self, columns: str, time: str) -> str:
        """``columns`` of every domain's live scores in the period, with a ``domain`` column:
        one SELECT after the other."""
        return " UNION ALL ".join(
            f"SELECT '{domain.name}' AS domain, {columns} FROM {domain.scores_table} FINAL "
            f"WHERE {self.since.format(time)}"
            for domain in domains.all()
        )

    def accuracy(self) -> str:
        """Per bucket of ``t`` and series: the estimated accuracy of each text domain (the
        mean calibrated confidence; rows stored before the column existed read 0 and are left
        out) and the accuracy on feedback labels. Defect models are left out: a defect flag
        is right on nearly every reading, failing or not."""
        text = [domain for domain in domains.all() if domain.task in TEXT_TASKS]
        estimated = " UNION ALL ".join(
            f"SELECT scored_at AS t, '{domain.name} estimated' AS series, confidence AS right "
            f"FROM {domain.scores_table} FINAL "
            f"WHERE {self.since.format('scored_at')} AND confidence > 0"
            for domain in text
        )
        names = ", ".join(f"'{domain.name}'" for domain in text)
        return f"""
            SELECT {self.bucket.format("t")} AS t, series, avg(right) AS accuracy, count() AS n
            FROM ({estimated}
                UNION ALL SELECT written_at, concat(domain, ' on feedback'),
                    label = predicted_label
                FROM feedback FINAL
                WHERE {self.since.format("written_at")} AND domain IN ({names}))
            GROUP BY t, series ORDER BY t, series"""


PAGE = Clock(
    bucket="toStartOfInterval({}, INTERVAL 10 SECOND)", since="{} >= now() - INTERVAL 15 MINUTE"
)
ACCURACY_PAGE = Clock(bucket="toStartOfInterval({}, INTERVAL 1 MINUTE)", since=PAGE.since)

PANELS: dict[str, str] = {
    **{name: PAGE.domain_chart(name) for name in domains.names()},
    "throughput": f"""
        SELECT {PAGE.bucket.format("scored_at")} AS t, domain,
            count() / 10 AS events_per_s, quantile(0.5)(latency_ms) AS p50_ms,
            quantile(0.95)(latency_ms) AS p95_ms
        FROM ({PAGE.over_scores("scored_at, latency_ms", "scored_at")})
        GROUP BY t, domain ORDER BY t, domain""",
    "accuracy": ACCURACY_PAGE.accuracy(),
    "versions": f"""
        SELECT domain, model_version, count() AS events
        FROM ({PAGE.over_scores("model_version", "ts")})
        GROUP BY domain, model_version ORDER BY domain, model_version""",
    "alerts": """
        SELECT ts, domain, entity, rule, severity, model_version,
            JSONExtractString(evidence, 'explanation') AS explanation
        FROM alerts FINAL ORDER BY ts DESC LIMIT 20""",
}


def charts() -> list[dict[str, Any]]:
    """Each domain's chart as the page draws it: the panel it reads, its title and axis."""
    return [
        {"panel": domain.name, **{k: v for k, v in asdict(domain.panel).items() if k != "sql"}}
        for domain in domains.all()
    ]


def page() -> str:
    """The dashboard page: one self-contained HTML file, nothing fetched from elsewhere."""
    return files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


async def panel_data(store: ReadOnlyStore) -> dict[str, Any]:
    """Every panel's columns and rows, keyed by panel name."""
    results = await asyncio.gather(*(store.query(sql) for sql in PANELS.values()))
    return {name: result.to_json() for name, result in zip(PANELS, results, strict=True)}
