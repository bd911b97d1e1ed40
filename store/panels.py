"""The SQL of the dashboard page and of the Grafana board, made from the registered domains.

    PAGE_PANELS: dict[str, str]      # panel name -> query, over the last 15 minutes
    GRAFANA_PANELS: dict[str, str]   # panel name -> query, with Grafana's time macros

Every panel is one query on the live tables (``FINAL``, so replayed events count once),
bucketed by event time. Each registered domain has its own chart (``Domain.panel``, keyed by
the domain's name); throughput, latency, accuracy, dead letters, the model versions and the
latest alerts run over every domain's tables. The page and the board share the queries and
differ in their clock (``Clock``): the page's is a fixed window, the board's Grafana's macros.
"""

from __future__ import annotations

from dataclasses import dataclass

import domains
from models.tasks import TEXT_TASKS


@dataclass(frozen=True)
class Clock:
    """How a query buckets a time column and keeps the rows of the period shown: ``bucket``
    and ``since`` are formats of the column's name; ``bucket_s`` is a bucket's length in
    seconds, as SQL."""

    bucket: str
    since: str
    bucket_s: str

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

    def throughput(self, latency: bool) -> str:
        """Events/s per bucket of scoring time and domain; with ``latency``, the p50 and p95 of
        ingest-to-scored latency (ms) as well."""
        quantiles = (
            ", quantile(0.5)(latency_ms) AS p50_ms, quantile(0.95)(latency_ms) AS p95_ms"
            if latency
            else ""
        )
        return f"""
            SELECT {self.bucket.format("scored_at")} AS t, domain,
                count() / {self.bucket_s} AS events_per_s{quantiles}
            FROM ({self.over_scores("scored_at, latency_ms", "scored_at")})
            GROUP BY t, domain ORDER BY t, domain"""

    def latency(self) -> str:
        """The p50 and p95 of ingest-to-scored latency (ms) per bucket and domain."""
        return f"""
            SELECT {self.bucket.format("scored_at")} AS t, domain,
                quantile(0.5)(latency_ms) AS p50_ms, quantile(0.95)(latency_ms) AS p95_ms
            FROM ({self.over_scores("scored_at, latency_ms", "scored_at")})
            GROUP BY t, domain ORDER BY t, domain"""

    def dead_letters(self) -> str:
        """Dead letters per bucket and source topic."""
        return f"""
            SELECT {self.bucket.format("ts")} AS t, source_topic, count() AS dead_letters
            FROM deadletter FINAL WHERE {self.since.format("ts")}
            GROUP BY t, source_topic ORDER BY t, source_topic"""

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

    def versions(self) -> str:
        """Events per domain and model version in the period, the latest scored first."""
        return f"""
            SELECT domain, model_name, model_version, count() AS events,
                max(scored_at) AS last_scored
            FROM ({self.over_scores("model_name, model_version, scored_at", "ts")})
            GROUP BY domain, model_name, model_version ORDER BY domain, last_scored DESC"""

    def alerts(self, limit: int, in_period: bool) -> str:
        """The latest ``limit`` alerts (of the period only, with ``in_period``), with their
        explanation."""
        where = f"WHERE {self.since.format('ts')}" if in_period else ""
        return f"""
            SELECT ts, domain, entity, rule, severity, model_version,
                JSONExtractString(evidence, 'explanation') AS explanation
            FROM alerts FINAL {where}
            ORDER BY ts DESC LIMIT {int(limit)}"""


PAGE = Clock(
    bucket="toStartOfInterval({}, INTERVAL 10 SECOND)",
    since="{} >= now() - INTERVAL 15 MINUTE",
    bucket_s="10",
)
ACCURACY_PAGE = Clock(
    bucket="toStartOfInterval({}, INTERVAL 1 MINUTE)", since=PAGE.since, bucket_s="60"
)
GRAFANA = Clock(bucket="$__timeInterval({})", since="$__timeFilter({})", bucket_s="$__interval_s")

PAGE_PANELS: dict[str, str] = {
    **{name: PAGE.domain_chart(name) for name in domains.names()},
    "throughput": PAGE.throughput(latency=True),
    "accuracy": ACCURACY_PAGE.accuracy(),
    "versions": PAGE.versions(),
    "alerts": PAGE.alerts(20, in_period=False),
}

GRAFANA_PANELS: dict[str, str] = {
    **{name: GRAFANA.domain_chart(name) for name in domains.names()},
    "throughput": GRAFANA.throughput(latency=False),
    "latency": GRAFANA.latency(),
    "dead_letters": GRAFANA.dead_letters(),
    "accuracy": GRAFANA.accuracy(),
    "versions": GRAFANA.versions(),
    "alerts": GRAFANA.alerts(50, in_period=True),
}
