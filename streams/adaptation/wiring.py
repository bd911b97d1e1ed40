"""What a scoring worker runs for domain adaptation, besides scoring:

* the feedback consumer on ``feedback.labels`` (``feedback.py``);
* the model watcher on ``model.updates`` (``swap.py``);
* the retrain-trigger check, on the Faust app's leader only (``triggers.py``).

A worker without scorers (``signalyard alerts worker``) runs none of them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial

import faust

from config.settings import DomainName, Settings
from models.registry import Registry
from models.serving.loading import load_version
from store.readonly import ReadOnlyStore
from streams.adaptation.feedback import FeedbackConsumer, FeedbackJoin
from streams.adaptation.messages import RetrainRequest
from streams.adaptation.swap import ModelWatcher
from streams.adaptation.triggers import TriggerCheck
from streams.observability.metrics import PipelineMetrics
from streams.processor import ScorerHolder, Sink
from streams.shared import SharedProducer

log = logging.getLogger(__name__)


def feedback_consumer(
    settings: Settings,
    scorers: Mapping[DomainName, ScorerHolder],
    store: ReadOnlyStore,
    sink: Sink,
    producer: SharedProducer,
    metrics: PipelineMetrics,
) -> FeedbackConsumer:
    agent = FeedbackJoin(
        scorers=scorers,
        store=store,
        send=producer.send,
        sink=sink,
        deadletter_topic=settings.topics.deadletter.name,
        event_wait_s=settings.adaptation.event_wait_s,
        metrics=metrics,
    )
    return FeedbackConsumer(
        agent,
        settings.kafka,
        settings.pipeline.app_id,
        settings.topics.feedback_labels.name,
        settings.pipeline.session_timeout_s,
        settings.queries.max_execution_time_s,
        guarantee=settings.pipeline.processing_guarantee,
    )


def model_watcher(
    settings: Settings, scorers: Mapping[DomainName, ScorerHolder], metrics: PipelineMetrics
) -> ModelWatcher:
    return ModelWatcher(
        settings.kafka,
        settings.topics.model_updates,
        scorers,
        Registry(settings.models_dir),
        partial(load_version, settings),
        metrics,
    )


def add_retrain_triggers(
    app: faust.App,
    settings: Settings,
    scorers: Mapping[DomainName, ScorerHolder],
    store: ReadOnlyStore,
    sink: Sink,
    producer: SharedProducer,
) -> None:
    """Check the triggers every ``adaptation.check_interval_s`` on the app's leader."""

    async def request(retrain: RetrainRequest) -> None:
        key, value = retrain.record()
        ack = await producer.send(settings.topics.retrain_requests.name, key, value, None)
        await ack

    registry = Registry(settings.models_dir)
    check = TriggerCheck(settings.adaptation, scorers, registry, store, sink, request)

    @app.timer(settings.adaptation.check_interval_s, on_leader=True)
    async def check_triggers() -> None:
        try:
            await check.check()
        except Exception:
            # A store that is busy or restarting must not stop scoring; the next tick retries.
            log.exception("retrain-trigger check failed")
