"""The Faust app of the scoring workers: one scoring agent per raw topic.

A worker is ``faust.Worker(app, runtime)``: the runtime (a ``mode.Service``) starts the
ClickHouse sink before the app consumes anything and stops it after the app has stopped its
agents and committed what they acked. Scorers are loaded before the worker starts, so a missing
model stops start-up with one clear error instead of a running worker that cannot score.

Workers with the same ``pipeline.app_id`` form one consumer group and split the partitions of
the raw topics between them. Each worker writes to ``settings.clickhouse_dsn``: with a
ClickHouse server (``http(s)://``) they share one store; the embedded engine (``chdb://``)
allows one process per data directory, so embedded workers each need their own
``SIGNALYARD_HOME`` (or DSN).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
import torch
from faust.types import StreamT
from mode import Service

from models.base import Scorer
from signalyard.settings import DOMAINS, Domain, Settings
from sinks.clickhouse_sink import ClickHouseSink
from sinks.readonly import ReadOnlyStore
from streams.adaptation.swap import ModelWatcher
from streams.adaptation.wiring import add_adaptation
from streams.agents import ScoringAgent
from streams.alerting.agent import add_alert_agents
from streams.connection import faust_credentials
from streams.observability.metrics import PipelineMetrics
from streams.observability.web import add_web_views
from streams.offsets import reread_uncommitted_after_rebalance
from streams.processor import BatchProcessor, Destinations, ScorerHolder, producer_send

log = logging.getLogger(__name__)


class ScoringRuntime(Service):
    """What the agents share in one worker process: the sink, a reader of the store, the
    domains' scorers and the watcher that swaps them."""

    def __init__(self, sink: ClickHouseSink, scorers: Mapping[Domain, Scorer], **kwargs: Any):
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

    async def on_start(self) -> None:
        await self.sink.start()
        if self.watcher is not None:
            await self.watcher.start()

    async def on_stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        await self.sink.stop()
        for executor in self.executors.values():
            executor.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings, runtime: ScoringRuntime) -> faust.App:
    """The app, with a scoring agent for each domain the runtime has a scorer for."""
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
    for domain in runtime.scorers:
        _add_agent(app, settings, runtime, domain)
    add_alert_agents(app, settings, runtime)
    add_adaptation(app, settings, runtime)
    add_web_views(app, runtime)
    topics = settings.topics
    reread_uncommitted_after_rebalance(
        app, {topics.raw(d).name for d in DOMAINS} | {topics.scored(d).name for d in DOMAINS}
    )
    return app


def _add_agent(app: faust.App, settings: Settings, runtime: ScoringRuntime, domain: Domain) -> None:
    processor = BatchProcessor(
        domain=domain,
        scorer=runtime.scorers[domain],
        executor=runtime.executors[domain],
        send=producer_send(app),
        sink=runtime.sink,
        destinations=Destinations(
            scored_topic=settings.topics.scored(domain).name,
            deadletter_topic=settings.topics.deadletter.name,
            events_table=f"{domain}_events",
            scores_table=f"{domain}_scores",
        ),
        max_payload_bytes=settings.pipeline.max_payload_bytes,
    )
    agent = ScoringAgent(
        processor,
        max_batch_size=settings.batching.max_batch_size,
        max_wait_s=settings.batching.max_wait_ms / 1000,
        max_batches_in_flight=settings.pipeline.max_batches_in_flight,
        metrics=runtime.metrics,
    )
    topic = app.topic(settings.topics.raw(domain).name, key_type=bytes, value_type=bytes)

    async def score(stream: StreamT) -> None:
        await agent.run(stream)

    app.agent(topic, name=f"score-{domain}")(score)


def run_worker(settings: Settings, scorers: Mapping[Domain, Scorer], loglevel: str) -> None:
    """Run a scoring worker until it is stopped (SIGTERM or SIGINT); does not return."""
    if settings.pipeline.torch_threads:
        # Torch's threads spin while they wait for work; on a busy machine more threads than
        # free cores make small batches many times slower, not faster.
        torch.set_num_threads(settings.pipeline.torch_threads)
    runtime = ScoringRuntime(ClickHouseSink(settings.clickhouse_dsn, settings.sink), scorers)
    app = create_app(settings, runtime)
    worker = faust.Worker(app, runtime, loglevel=loglevel, quiet=True)
    # Faust's progress spinner sets the root logger to DEBUG to spin on every record: that
    # turns each message's debug line in aiokafka into a formatted log record.
    worker.spinner = None
    worker.execute_from_commandline()
