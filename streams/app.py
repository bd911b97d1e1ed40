"""A scoring worker: the scoring consumer and the Faust app around it.

A worker is ``faust.Worker(app, runtime)``. The runtime (a ``mode.Service``) starts the
ClickHouse sink, the model watcher and the scoring consumer (``scoring.py``), which reads the
raw topics in batches; it stops them in the reverse order, so what was read is delivered
before the sink closes. The Faust app runs the agents whose volume is small (alerts in
scoring workers, feedback, the retrain-trigger timer) and the web endpoints. Scorers are
loaded before the worker starts, so a missing model stops start-up with one clear error
instead of a running worker that cannot score.

Workers with the same ``pipeline.app_id`` split the partitions of the raw topics between
them (group ``<app_id>-scoring``), and those of the agents' topics (group ``<app_id>``).
Each worker writes to ``settings.clickhouse_dsn``: with a ClickHouse server (``http(s)://``)
they share one store; the embedded engine (``chdb://``) allows one process per data
directory, so embedded workers each need their own ``SIGNALYARD_HOME`` (or DSN).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import torch
from mode import Service

from models.base import Scorer
from signalyard.settings import DOMAINS, Domain, Settings
from sinks.clickhouse_sink import ClickHouseSink
from sinks.readonly import ReadOnlyStore
from streams.adaptation.swap import ModelWatcher
from streams.adaptation.wiring import add_adaptation
from streams.alerting.agent import add_alert_agents
from streams.connection import faust_credentials
from streams.observability.metrics import PipelineMetrics
from streams.observability.web import add_web_views
from streams.offsets import reread_uncommitted_after_rebalance
from streams.processor import ScorerHolder
from streams.scoring import ScoringConsumer

log = logging.getLogger(__name__)


class ScoringRuntime(Service):
    """What one worker process shares: the sink, a reader of the store, the domains' scorers,
    the watcher that swaps them and the consumer that scores the raw topics."""

    def __init__(
        self,
        settings: Settings,
        sink: ClickHouseSink,
        scorers: Mapping[Domain, Scorer],
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.sink = sink
        self.store = ReadOnlyStore(sink.dsn)
        self.metrics = PipelineMetrics()
        self.scorers = {domain: ScorerHolder(scorer) for domain, scorer in scorers.items()}
        self.watcher: ModelWatcher | None = None
        # One thread per domain: a model is called by one thread at a time, and a slow model
        # of one domain does not hold up the others.
        self.executors = {
            domain: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"score-{domain}")
            for domain in scorers
        }
        self.consumer = (
            ScoringConsumer(settings, self.scorers, self.executors, sink, self.metrics)
            if scorers
            else None
        )

    async def on_start(self) -> None:
        await self.sink.start()
        if self.watcher is not None:
            await self.watcher.start()
        if self.consumer is not None:
            await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        await self.sink.stop()
        for executor in self.executors.values():
            executor.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings, runtime: ScoringRuntime) -> faust.App:
    """The app with the worker's Faust agents and web views."""
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
        # The leader topic elects the worker that runs the retrain-trigger timer.
        topic_disable_leader=not runtime.scorers,
        web_enabled=pipeline.web_port > 0,
        web_port=pipeline.web_port or 6066,
        datadir=str(settings.home_dir / "faust"),
    )
    add_alert_agents(app, settings, runtime)
    add_adaptation(app, settings, runtime)
    add_web_views(app, runtime)
    topics = settings.topics
    reread_uncommitted_after_rebalance(app, {topics.scored(d).name for d in DOMAINS})
    return app


def run_worker(settings: Settings, scorers: Mapping[Domain, Scorer], loglevel: str) -> None:
    """Run a scoring worker until it is stopped (SIGTERM or SIGINT); does not return."""
    if settings.pipeline.torch_threads:
        # Torch's threads spin while they wait for work; on a busy machine more threads than
        # free cores make small batches many times slower, not faster.
        torch.set_num_threads(settings.pipeline.torch_threads)
    runtime = ScoringRuntime(
        settings, ClickHouseSink(settings.clickhouse_dsn, settings.sink), scorers
    )
    app = create_app(settings, runtime)
    worker = faust.Worker(app, runtime, loglevel=loglevel, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG to spin on every record: that
    # turns each message's debug line in aiokafka into a formatted log record.
    worker.spinner = None
    worker.execute_from_commandline()
