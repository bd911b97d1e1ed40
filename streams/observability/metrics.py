"""The worker's Prometheus metrics.

Counters and histograms are updated once per micro-batch by the scoring agents (cheap calls
on the hot path); everything that already has a live value elsewhere (consumer lag, model
versions, the sink's queue) is read at scrape time by ``WorkerCollector`` instead of being
copied on every event.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from config.settings import DomainName
from store.readonly import ReadOnlyStore
from streams.processor import PreparedBatch, ScorerHolder

# Micro-batches hold 1 to max_batch_size (at most 4096) events.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RecentMeans:
    """The mean of the last ``size`` values observed per (domain, model version)."""

    def __init__(self, size: int) -> None:
        self.values: defaultdict[tuple[str, str], deque[float]] = defaultdict(
            lambda: deque(maxlen=size)
        )

    def add(self, domain: str, version: str, values: Iterable[float]) -> None:
        self.values[domain, version].extend(values)

    def mean(self, domain: str, version: str) -> float | None:
        """None before the first value."""
        window = self.values.get((domain, version))
        return sum(window) / len(window) if window else None


class PipelineMetrics:
    """The counters and histograms of one worker, in a registry of its own, and the windows
    behind the accuracy gauges (each over the last ``estimate_window`` results or labels)."""

    def __init__(self, estimate_window: int = 500) -> None:
        # Mean calibrated confidence of each version's recent results: its estimated accuracy.
        self.confidence = RecentMeans(estimate_window)
        # Whether each recent feedback label matched what the version predicted.
        self.feedback_correct = RecentMeans(estimate_window)
        self.registry = CollectorRegistry(auto_describe=True)
        by_domain = {"labelnames": ["domain"], "registry": self.registry}
        self.events_in = Counter(
            "signalyard_events_in", "Raw events consumed into micro-batches", **by_domain
        )
        self.events_out = Counter(
            "signalyard_events_out",
            "Scored results delivered to the scored topic and ClickHouse",
            **by_domain,
        )
        self.events_dead = Counter(
            "signalyard_events_deadlettered",
            "Events delivered to the dead-letter topic",
            **by_domain,
        )
        self.batch_size = Histogram(
            "signalyard_batch_size",
            "Events per micro-batch",
            buckets=BATCH_SIZE_BUCKETS,
            **by_domain,
        )
        self.scoring_seconds = Histogram(
            "signalyard_batch_scoring_seconds",
            "Validating and scoring one micro-batch; the model call, off the event loop, dominates",
            buckets=SECONDS_BUCKETS,
            **by_domain,
        )
        self.end_to_end_seconds = Histogram(
            "signalyard_end_to_end_latency_seconds",
            "From an event's Kafka timestamp to its result acknowledged by Kafka and ClickHouse",
            buckets=SECONDS_BUCKETS,
            **by_domain,
        )

        self.feedback_labels = Counter(
            "signalyard_feedback_labels",
            "Feedback labels joined to their scored events, or dead-lettered (by kind)",
            labelnames=["outcome"],
            registry=self.registry,
        )
        self.model_swaps = Counter(
            "signalyard_model_swaps",
            "Switches to an announced model version between batches",
            **by_domain,
        )
        self.model_refusals = Counter(
            "signalyard_model_refusals",
            "Announced model versions refused (broken or unloadable); the current one scores on",
            **by_domain,
        )
        self.alerts_sent = Counter(
            "signalyard_alerts_sent",
            "Alerts published (resends after a restart included), by rule and by whether their "
            "triggering event was explained, unexplained or not_asked",
            labelnames=["domain", "rule", "severity", "explanation"],
            registry=self.registry,
        )

    def scored(self, domain: str, events: int, seconds: float) -> None:
        """A micro-batch of ``events`` raw events was validated and scored in ``seconds``."""
        self.events_in.labels(domain).inc(events)
        self.batch_size.labels(domain).observe(events)
        self.scoring_seconds.labels(domain).observe(seconds)

    def delivered(self, domain: str, batch: PreparedBatch) -> None:
        """The batch's results and dead letters are acknowledged by Kafka and ClickHouse."""
        self.events_out.labels(domain).inc(len(batch.results))
        self.events_dead.labels(domain).inc(len(batch.dead_letters))
        if not batch.results:
            return
        # One scorer scored the whole batch: its results share a version.
        version = batch.results[0].model_version
        self.confidence.add(domain, version, [result.confidence for result in batch.results])
        # A batch's results share scored_at; each one's latency_ms runs from its Kafka timestamp
        # to scored_at, so delivery adds the same delay to all of them.
        since_scored = time.time() - batch.results[0].scored_at.timestamp()
        observe = self.end_to_end_seconds.labels(domain).observe
        for result in batch.results:
            observe(since_scored + result.latency_ms / 1000)

    def labeled(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Feedback rows were stored: each one's label against what its version predicted."""
        for row in rows:
            self.feedback_correct.add(
                row["domain"],
                row["model_version"],
                (float(row["label"] == row["predicted_label"]),),
            )


class PartitionReader(Protocol):
    """A consumer of the worker's, as metrics see it."""

    def assignment(self) -> set[TopicPartition]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def committed_offset(self, partition: TopicPartition) -> int | None: ...


class SinkStatus(Protocol):
    connected: bool
    pending_rows: int
    retries: int
    inserts: int


class EventExplaining(Protocol):
    """Explains a stored, scored event (``streams.explaining.EventExplainer``)."""

    async def explain_event(self, event_id: str, domain: DomainName | None) -> dict[str, Any]: ...


class BacktestWriting(Protocol):
    """Writes replays' runs to the store the worker holds (``store.backtest_runs``)."""

    async def forget(self, run_id: str) -> None: ...

    async def insert(self, table: str, body: bytes) -> None: ...


class AlertStates(Protocol):
    def held(self) -> Mapping[DomainName, tuple[int, int]]:
        """Per domain: the entities whose alert state is held, and the results in them."""
        ...


class WorkerView(Protocol):
    """What the metrics and the web views read of a running worker."""

    metrics: PipelineMetrics
    sink: SinkStatus
    store: ReadOnlyStore
    backtests: BacktestWriting
    scorers: Mapping[DomainName, ScorerHolder]
    explainer: EventExplaining
    alerts: AlertStates | None  # None: this worker does not alert

    @property
    def readers(self) -> Sequence[PartitionReader]:
        """The worker's consumers, the one it exists for (scoring, else alerts) first."""
        ...


class WorkerCollector:
    """Gauges read at scrape time from the worker's consumers, sink and scorers."""

    def __init__(self, worker: WorkerView) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        yield self._lag()
        versions = GaugeMetricFamily(
            "signalyard_model_info",
            "The live model of each domain (value 1)",
            labels=["domain", "model_name", "version"],
        )
        for domain, holder in self.worker.scorers.items():
            versions.add_metric([domain, holder.current.model_name, holder.current.version], 1)
        yield versions
        yield from self._accuracy()
        sink = self.worker.sink
        yield GaugeMetricFamily(
            "signalyard_sink_pending_rows",
            "Rows accepted by the ClickHouse sink and not yet inserted (queue depth)",
            value=sink.pending_rows,
        )
        yield CounterMetricFamily(
            "signalyard_sink_retries", "Failed ClickHouse calls that were retried", sink.retries
        )
        yield CounterMetricFamily(
            "signalyard_sink_inserts", "Insert statements ClickHouse accepted", sink.inserts
        )
        yield from self._alert_states()
        yield GaugeMetricFamily(
            "signalyard_ready",
            "1 once partitions are assigned and the sink is connected",
            value=float(is_ready(self.worker)),
        )

    def _accuracy(self) -> Iterator[Metric]:
        """The live version's accuracy three ways: estimated without labels, measured on the
        feedback labels joined here, and on its validation split at training time."""
        gauges = {
            "estimated": GaugeMetricFamily(
                "signalyard_estimated_accuracy",
                "Mean calibrated confidence of the live model's recent results: its accuracy "
                "estimated without labels",
                labels=["domain", "version"],
            ),
            "feedback": GaugeMetricFamily(
                "signalyard_feedback_accuracy",
                "Share of recent feedback labels that the live model's prediction matched",
                labels=["domain", "version"],
            ),
            "validation": GaugeMetricFamily(
                "signalyard_validation_accuracy",
                "The live model's accuracy on its validation split, where its calibration says",
                labels=["domain", "version"],
            ),
        }
        metrics = self.worker.metrics
        for domain, holder in self.worker.scorers.items():
            version, validation = holder.current.version, holder.current.calibration.accuracy
            figures = {
                # Only a calibrated model's confidence estimates its accuracy.
                "estimated": None
                if validation is None
                else metrics.confidence.mean(domain, version),
                "feedback": metrics.feedback_correct.mean(domain, version),
                "validation": validation,
            }
            for name, value in figures.items():
                if value is not None:
                    gauges[name].add_metric([domain, version], value)
        yield from gauges.values()

    def _alert_states(self) -> Iterator[Metric]:
        """What the alert state holds: what a worker's memory grows with, up to the windows'
        length and the results an entity may keep."""
        entities = GaugeMetricFamily(
            "signalyard_alert_entities",
            "Entities whose alert state this worker holds",
            labels=["domain"],
        )
        results = GaugeMetricFamily(
            "signalyard_alert_results_held",
            "Results held in the alert windows of those entities",
            labels=["domain"],
        )
        if self.worker.alerts is not None:
            for domain, (count, held) in sorted(self.worker.alerts.held().items()):
                entities.add_metric([domain], count)
                results.add_metric([domain], held)
        yield entities
        yield results

    def _lag(self) -> Metric:
        """Per assigned partition: the end offset last fetched minus the committed offset.

        The consumers keep both (the end offset from each fetch response, the committed offset
        from each commit), so a scrape costs no broker round trip. A partition shows once the
        worker has fetched from it; before its first commit the whole of it counts.
        """
        lag = GaugeMetricFamily(
            "signalyard_consumer_lag",
            "Records of a partition not yet committed by this worker's group",
            labels=["topic", "partition"],
        )
        for reader in self.worker.readers:
            for tp in reader.assignment():
                end = reader.highwater(tp)
                if end is not None:
                    committed = reader.committed_offset(tp) or 0
                    lag.add_metric([tp.topic, str(tp.partition)], max(0, end - committed))
        return lag


def assigned(worker: WorkerView) -> list[tuple[str, int]]:
    """Every partition this worker reads now."""
    return sorted(
        (tp.topic, tp.partition) for reader in worker.readers for tp in reader.assignment()
    )


def is_ready(worker: WorkerView) -> bool:
    """The sink is connected and the worker has its share of the partitions of the consumer
    it exists for: the raw topics when it scores, else (an alerts worker) the scored topics."""
    readers = worker.readers
    return worker.sink.connected and bool(readers) and bool(readers[0].assignment())
