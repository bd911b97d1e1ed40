"""Backtests: a time range of a raw topic scored again, by any model version, as a run of its own.

``replay`` reads the range (``streams.replay``), validates every record as the worker does
(a malformed one is counted by the kind of problem, not scored), scores the valid events and
writes the results to ``backtest_<domain>_scores`` under the run id, then the run's row to
``backtest_runs``. It never writes live tables or topics and never joins a consumer group.
Replaying into a run id again first deletes what that run id held, so it names one replay.

Determinism: an event's scores depend on the batch it is scored with (a text batch is padded to
its longest text, and matrix kernels may add up in another order for another batch shape), so
the batches are the same every time: the valid events in (partition, offset) order, cut into
batches of ``batch_size``. They also depend on the threads the kernels split their sums over,
so the model is loaded as every scoring process loads it, with the settings' threads
(``models.serving.loading.load_folder``, ``pipeline.torch_threads``). Inference runs under
``torch.inference_mode`` in eval mode (``models/serving/inference.py``), so one range, one
version and one batch size give the same scores.

``compare`` puts two runs side by side (pure): counts by label, how often the two agree on the
events both scored, accuracy and macro F1 against feedback labels on those events, and the
alerts each run would have fired under the configured rules, folded per entity in event-time
order by the alert engine itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sklearn.metrics import accuracy_score, f1_score

import domains
from config.settings import DomainName, Settings
from domains.base import Lineage, RawEvent, ScoredResult
from models.base import Scorer
from store import queries
from store.backtest_runs import RUNS_TABLE, RunWriter, scores_table
from store.readonly import query_store
from streams.alerting.alert import Alert
from streams.alerting.engine import EntityState
from streams.alerting.rules import Rule
from streams.processor import SourceRecord, kafka_time, predict
from streams.replay import RangeReader, TimeRange, format_time
from streams.validation import EventLimits, Rejected, parse_events

LIVE = "live"  # in a comparison: the live ``<domain>_scores`` rows of the other run's events
RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_DEAD_EXAMPLES = 5
REPLAY = "replay"  # the processing guarantee a backtest's results name in their lineage
Progress = Callable[[int, int], None]  # (offsets read, offsets in the range)


def check_run_id(run_id: str) -> str:
    if run_id == LIVE or not RUN_ID.match(run_id):
        raise ValueError(
            f"run id {run_id!r} must be 1-128 letters, digits, '.', '_' or '-', and not {LIVE!r}"
        )
    return run_id


def default_run_id(domain: DomainName, version: str, time_range: TimeRange) -> str:
    """Named after what it replays, so replaying the same thing again replaces it."""
    start, end = (
        format_time(ms).replace("-", "").replace(":", "")
        for ms in (time_range.start_ms, time_range.end_ms)
    )
    return f"{domain}-{version}-{start}-{end}"


@dataclass
class RunReport:
    """What a replay did; ``row`` is its row of ``backtest_runs``."""

    run_id: str
    domain: DomainName
    topic: str
    time_range: TimeRange
    model_name: str
    model_version: str
    model_sha256: str  # the exact model bytes the run scored with
    batch_size: int
    started_at: datetime
    finished_at: datetime | None = None
    records: int = 0  # offsets read
    skipped: int = 0  # records whose own timestamp is outside the range
    events: int = 0  # scored
    dead: Counter[str] = field(default_factory=Counter)  # by kind of problem
    dead_examples: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "domain": self.domain,
            "topic": self.topic,
            "from_ts": self.time_range.start,
            "to_ts": self.time_range.end,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_sha256": self.model_sha256,
            "batch_size": self.batch_size,
            "records": self.records,
            "skipped": self.skipped,
            "events": self.events,
            "dead": self.dead.total(),
            "dead_kinds": dict(self.dead),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def reject(self, record: SourceRecord, rejected: Rejected) -> None:
        self.dead[rejected.kind] += 1
        if len(self.dead_examples) < MAX_DEAD_EXAMPLES:
            self.dead_examples.append(
                f"partition {record.partition} offset {record.offset}: {rejected}"
            )


async def replay(
    settings: Settings,
    writer: RunWriter,
    domain: DomainName,
    time_range: TimeRange,
    scorer: Scorer,
    run_id: str,
    batch_size: int,
    on_progress: Progress | None = None,
) -> RunReport:
    """Score the range of ``domain``'s raw topic with ``scorer`` into run ``run_id``."""
    topic = settings.topics.raw(domain).name
    report = RunReport(
        run_id=check_run_id(run_id),
        domain=domain,
        topic=topic,
        time_range=time_range,
        model_name=scorer.model_name,
        model_version=scorer.version,
        model_sha256=scorer.model_sha256,
        batch_size=batch_size,
        started_at=datetime.now(UTC),
    )
    table = scores_table(domain)
    pending: list[tuple[SourceRecord, RawEvent]] = []
    rows: list[dict[str, Any]] = []
    limits = EventLimits.of(settings.pipeline)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backtest")

    async def score(batch: list[tuple[SourceRecord, RawEvent]]) -> None:
        started = datetime.now(UTC)
        inputs = [domains.get(domain).model_input(event) for _, event in batch]
        outcomes = await predict(executor, scorer, inputs, domain)
        scored_at = datetime.now(UTC)
        for (record, event), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                report.reject(record, outcome)
                continue
            # In a replay the record's age says nothing: latency is the batch's scoring time.
            result = domains.get(domain).scored_result(
                event,
                outcome,
                scorer,
                len(batch),
                started,
                scored_at,
                Lineage(record.topic, record.partition, record.offset, REPLAY),
            )
            rows.append({"run_id": run_id, **result.model_dump()})
            report.events += 1
        if len(rows) >= settings.sink.max_batch_rows:
            writer.insert(table, rows)
            rows.clear()

    try:
        async with RangeReader(settings.kafka, topic, time_range) as reader:
            writer.forget(run_id)  # once the range is found: a failed start keeps the old run
            async for fetched in reader.fetch():
                records = fetched.records
                parsed = parse_events(
                    domain,
                    [record.value for record in records],
                    limits,
                    [kafka_time(record.timestamp) for record in records],
                )
                for record, outcome in zip(records, parsed, strict=True):
                    if isinstance(outcome, Rejected):
                        report.reject(record, outcome)
                    else:
                        pending.append((record, outcome))
                while len(pending) >= batch_size:
                    await score(pending[:batch_size])
                    del pending[:batch_size]
                report.records += fetched.consumed
                report.skipped += fetched.skipped
                if on_progress is not None:
                    on_progress(report.records, reader.total)
            if pending:
                await score(pending)
    finally:
        executor.shutdown(wait=False)
    writer.insert(table, rows)
    report.finished_at = datetime.now(UTC)
    writer.insert(RUNS_TABLE, [report.row()])
    return report


# Comparing runs


@dataclass(frozen=True)
class Side:
    """One run of a comparison, summed up."""

    name: str  # the run id, or "live"
    versions: list[str]  # the model versions that scored its events
    events: int
    labels: dict[str, int]  # events by label (sentiment, risk level or defect flag)
    metrics: dict[str, float] | None  # against feedback, on the events both runs scored
    alerts: dict[str, int]  # rule name -> alerts it would have fired


@dataclass(frozen=True)
class Comparison:
    domain: DomainName
    a: Side
    b: Side
    common: int  # events both runs scored
    agreement: float | None  # share of the common events with the same label
    score_field: str
    mean_abs_score_change: float | None  # on the common events
    feedback: int  # common events with a feedback label

    def metric_deltas(self) -> dict[str, float]:
        if self.a.metrics is None or self.b.metrics is None:
            return {}
        return {name: self.b.metrics[name] - self.a.metrics[name] for name in self.a.metrics}


def label_of(domain: DomainName, result: ScoredResult) -> str:
    value = getattr(result, domains.get(domain).summary_field)
    return str(value).lower() if isinstance(value, bool) else str(value)


def compare(
    domain: DomainName,
    a: tuple[str, Sequence[ScoredResult]],
    b: tuple[str, Sequence[ScoredResult]],
    feedback: Mapping[str, str],
    rules: Sequence[Rule],
) -> Comparison:
    """Two named runs' results side by side; ``feedback`` maps event ids to true labels."""
    by_id = [{r.event_id: r for r in results} for _, results in (a, b)]
    common = sorted(by_id[0].keys() & by_id[1].keys())
    pairs = [(by_id[0][i], by_id[1][i]) for i in common]
    agreeing = sum(label_of(domain, x) == label_of(domain, y) for x, y in pairs)
    score = domains.get(domain).score_field
    change = [abs(getattr(x, score) - getattr(y, score)) for x, y in pairs]
    labeled = [i for i in common if i in feedback]
    sides = [
        Side(
            name=name,
            versions=sorted({r.model_version for r in results}),
            events=len(by_id[n]),
            labels=dict(sorted(Counter(label_of(domain, r) for r in by_id[n].values()).items())),
            metrics=feedback_metrics(domain, [by_id[n][i] for i in labeled], feedback),
            alerts=dict(Counter(alert.rule for alert in would_fire(domain, rules, results))),
        )
        for n, (name, results) in enumerate((a, b))
    ]
    return Comparison(
        domain=domain,
        a=sides[0],
        b=sides[1],
        common=len(common),
        agreement=agreeing / len(common) if common else None,
        score_field=score,
        mean_abs_score_change=sum(change) / len(change) if change else None,
        feedback=len(labeled),
    )


def feedback_metrics(
    domain: DomainName, results: Sequence[ScoredResult], feedback: Mapping[str, str]
) -> dict[str, float] | None:
    """Accuracy and macro F1 (over the classes present) of the results against feedback."""
    if not results:
        return None
    predicted = [str(getattr(r, domains.get(domain).feedback_field)) for r in results]
    truth = [feedback[r.event_id] for r in results]
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
    }


def would_fire(
    domain: DomainName, rules: Sequence[Rule], results: Sequence[ScoredResult]
) -> list[Alert]:
    """The alerts the rules fire on these results, folded per entity in event-time order."""
    if not rules:
        return []
    states: dict[str, EntityState] = {}
    alerts: list[Alert] = []
    for result in sorted(results, key=lambda r: (_utc(r.ts), r.event_id)):
        entity = getattr(result, domains.get(domain).entity)
        alerts.extend(states.setdefault(entity, EntityState()).fold(domain, rules, result).alerts)
    return alerts


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


# Reading runs back: read-only queries, through the worker when it holds an embedded store


def load_run(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """The run's row of ``backtest_runs`` (JSON values: times as ISO 8601), or None."""
    result = query_store(settings, queries.backtest_run(run_id))
    return dict(zip(result.columns, result.rows[0], strict=True)) if result.rows else None


def load_results(
    settings: Settings, domain: DomainName, run_id: str, events_of: str | None = None
) -> list[ScoredResult]:
    """The results of run ``run_id``; for ``live``, the live results of run ``events_of``'s
    events."""
    if run_id == LIVE:
        sql = queries.live_results_of_run(domain, events_of or "")
    else:
        sql = queries.run_results(domain, run_id)
    result = query_store(settings, sql)
    schema = domains.get(domain).result
    return [
        schema.model_validate(dict(zip(result.columns, row, strict=True))) for row in result.rows
    ]


def load_feedback(settings: Settings, domain: DomainName, run_ids: Sequence[str]) -> dict[str, str]:
    """The latest feedback label of each event of the runs ``run_ids``."""
    result = query_store(settings, queries.labels_of_runs(domain, run_ids))
    return {event_id: label for event_id, label in result.rows}
