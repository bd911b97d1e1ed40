"""A worker: its consumers, the services they share, and the Faust app around them.

A worker is ``faust.Worker(app, runtime)``. The runtime (a ``mode.Service``) starts the
ClickHouse sink, a shared producer, the model watcher and the consumers: the scoring consumer
(``scoring.py``), which reads the raw topics in batches, the feedback consumer and the alert
consumer (``streams.group_consumer``: read committed, commit after each handled fetch). It
stops them in the reverse order, so what was read is delivered before the sink closes. The
Faust app runs the retrain-trigger timer on its leader and the web endpoints. Scorers are
loaded before the worker starts, so a missing model stops start-up with one clear error
instead of a running worker that cannot score.

Workers with the same ``pipeline.app_id`` split the partitions of the raw topics between them
(group ``<app_id>-scoring``), of the scored topics (``<app_id>-alerts``) and of the feedback
labels (``<app_id>-feedback``). Each worker writes to ``settings.clickhouse_dsn``: with a
ClickHouse server (``http(s)://``) they share one store; the embedded engine (``chdb://``)
allows one process per data directory, so embedded workers each need their own
``SIGNALYARD_HOME`` (or DSN).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import resource
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from mode import Service

from config.settings import DomainName, Settings
from models.base import Scorer
from models.registry import Registry
from store.backtest_runs import BacktestWrites
from store.connection import CHDB_SCHEME
from store.readonly import ReadOnlyStore
from store.sink import ClickHouseSink
from store.web_token import issue
from streams.adaptation.wiring import add_retrain_triggers, feedback_consumer, model_watcher
from streams.alerting.consumer import alert_consumer
from streams.connection import faust_credentials
from streams.explaining import EventExplainer
from streams.observability.log_limits import limit_client_logs
from streams.observability.metrics import PartitionReader, PipelineMetrics
from streams.observability.web import add_web_views
from streams.processor import ScorerHolder
from streams.scoring import ScoringConsumer
from streams.shared import SharedProducer, exit_fatally

log = logging.getLogger(__name__)


class ScoringRuntime(Service):
    """What one worker process shares: the sink, a reader of the store, a producer, the
    domains' scorers, the watcher that swaps them and the worker's consumers.

    Raises RulesError (a SettingsError) when the alert rules file is missing or invalid."""

    def __init__(
        self,
        settings: Settings,
        sink: ClickHouseSink,
        scorers: Mapping[DomainName, Scorer],
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.sink = sink
        self.store = ReadOnlyStore(sink.dsn, settings.queries)
        self.backtests = BacktestWrites(sink.dsn)
        self.metrics = PipelineMetrics(settings.adaptation.estimate_window)
        self.producer = SharedProducer(settings.kafka)
        self.scorers = {domain: ScorerHolder(scorer) for domain, scorer in scorers.items()}
        # One thread per domain: a model is called by one thread at a time, and a slow model
        # of one domain does not hold up the others.
        self.executors = {
            domain: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"score-{domain}")
            for domain in scorers
        }
        scoring = bool(scorers)
        self.consumer = (
            ScoringConsumer(settings, self.scorers, self.executors, sink, self.metrics)
            if scoring
            else None
        )
        self.watcher = model_watcher(settings, self.scorers, self.metrics) if scoring else None
        self.feedback = (
            feedback_consumer(settings, self.scorers, self.store, sink, self.producer, self.metrics)
            if scoring
            else None
        )
        self.explainer = EventExplainer(
            settings.explanations,
            Registry(settings.models_dir),
            self.store,
            sink,
            settings.inference.max_seq_length,
        )
        self.alerts = alert_consumer(
            settings,
            sink,
            self.producer,
            scoring,
            self.metrics,
            self.explainer if explains_alerts(settings, scoring) else None,
        )

    @property
    def readers(self) -> list[PartitionReader]:
        """The consumers, the one the worker exists for (scoring, else alerts) first."""
        readers = [self.consumer, self.alerts, self.feedback]
        return [reader for reader in readers if reader is not None]

    async def on_start(self) -> None:
        await self.sink.start()
        await self.producer.start()
        if self.watcher is not None:
            await self.watcher.start()
        if self.alerts is not None and self.alerts.explainer is not None:
            self.explainer.start()
        for reader in self.readers:
            await reader.start()

    async def on_stop(self) -> None:
        for reader in reversed(self.readers):
            await reader.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        await self.producer.stop()
        await self.sink.stop()
        for executor in self.executors.values():
            executor.shutdown(wait=False, cancel_futures=True)
        self.explainer.close()


class Worker(faust.Worker):
    """Faust's worker, whose stop ends the process within ``shutdown_timeout_s`` however it
    goes: a stop delivers, commits and leaves the groups, which waits on the broker, and with
    the broker gone it could wait for ever. The deadline runs on a thread of its own, so that
    a stuck event loop cannot hold it back."""

    def __init__(self, *args: Any, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._deadline: threading.Timer | None = None

    async def stop(self) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(self.shutdown_timeout_s, self._overdue)
            self._deadline.daemon = True
            self._deadline.start()
        await super().stop()

    def _overdue(self) -> None:
        exit_fatally(f"the worker did not stop within {self.shutdown_timeout_s:g}s", None)


def explains_alerts(settings: Settings, scoring: bool) -> bool:
    """Whether the worker's alerts carry explanations: as set, except in an alerting-only
    worker on an embedded store, which never holds the scoring workers' events."""
    embedded = settings.clickhouse_dsn.startswith(CHDB_SCHEME)
    return settings.explanations.in_alerts and (scoring or not embedded)


def create_app(settings: Settings, runtime: ScoringRuntime) -> faust.App:
    """The app with the worker's retrain-trigger timer and web views."""
    kafka = settings.kafka
    pipeline = settings.pipeline
    app = faust.App(
        pipeline.app_id,
        broker=[f"kafka://{server}" for server in kafka.bootstrap_list],
        broker_credentials=faust_credentials(kafka),
        broker_client_id=kafka.client_id,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=pipeline.session_timeout_s,
        broker_heartbeat_interval=pipeline.session_timeout_s / 10,
        # The leader topic elects the worker that runs the retrain-trigger timer; it is also
        # the one topic of Faust's own consumer, which may not subscribe to none.
        web_enabled=pipeline.web_port > 0,
        web_port=pipeline.web_port or 6066,
        web_bind=pipeline.web_bind,
        datadir=str(settings.home_dir / "faust"),
    )
    if runtime.scorers:
        add_retrain_triggers(
            app, settings, runtime.scorers, runtime.store, runtime.sink, runtime.producer
        )
    add_web_views(app, runtime, issue(settings) if pipeline.web_port else "")
    return app


# The soft limit of open descriptors asked for where the hard limit is unlimited.
OPEN_FILES_WITHOUT_LIMIT = 65_536

# Collections of the youngest generation: every this many allocations net of frees, instead of
# Python's default 700 (a few events' worth of objects).
YOUNG_COLLECTION_ALLOCATIONS = 50_000


def settle_garbage_collector() -> None:
    """Spare the scoring path from the cyclic garbage collector, once the models are loaded.

    Each event allocates a few dozen short-lived objects (records, events, results, rows);
    with Python's defaults a young collection runs every few events and a full one, which
    walks every object alive (torch, the models, the modules: millions), every few thousand
    batches, so the collector took a large share of a busy worker's event-loop time. What
    exists at start-up lives as long as the worker: ``gc.freeze`` moves it out of the
    collector's sight, and a larger young generation makes collections rarer."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, middle, oldest)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open descriptors to its hard limit; return it.

    A worker with the embedded ClickHouse holds hundreds of descriptors (three per ClickHouse
    thread, parts, sockets), and the engine's first exception opens every loaded library to
    symbolize its stack trace, a few hundred more: near the common default soft limit of 1,024.
    The hard limit is what the administrator allows; raising the soft one needs no privilege."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WITHOUT_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):  # a system that refuses keeps its limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_worker(settings: Settings, scorers: Mapping[DomainName, Scorer], loglevel: str) -> None:
    """Run a scoring worker until it is stopped (SIGTERM or SIGINT); does not return."""
    runtime = ScoringRuntime(
        settings, ClickHouseSink(settings.clickhouse_dsn, settings.sink), scorers
    )
    app = create_app(settings, runtime)
    limit_client_logs()
    raise_open_files_limit()
    settle_garbage_collector()
    worker = Worker(
        app,
        runtime,
        loglevel=loglevel,
        quiet=True,
        shutdown_timeout_s=settings.pipeline.shutdown_timeout_s,
    )
    # Faust's progress spinner sets the root logger to DEBUG to spin on every record: that
    # turns each message's debug line in aiokafka into a formatted log record.
    worker.spinner = None
    worker.execute_from_commandline()
