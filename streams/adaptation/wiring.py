"""What a scoring worker runs for domain adaptation, besides scoring:

* the feedback agent on ``feedback.labels`` (``feedback.py``);
* the retrain-trigger check, on the group's leader only (``triggers.py``);
* the model watcher on ``model.updates`` (``swap.py``).

A worker without scorers (``signalyard alerts worker``) runs none of them.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import faust
from faust.types import StreamT

from models.loading import load_version
from models.registry import Registry
from signalyard.settings import Settings
from streams.adaptation.feedback import FeedbackAgent
from streams.adaptation.messages import RetrainRequest
from streams.adaptation.swap import ModelWatcher
from streams.adaptation.triggers import TriggerCheck
from streams.agents import producer_send

if TYPE_CHECKING:  # streams.app adds these to its app
    from streams.app import ScoringRuntime

log = logging.getLogger(__name__)


def add_adaptation(app: faust.App, settings: Settings, runtime: ScoringRuntime) -> None:
    if not runtime.scorers:
        return
    registry = Registry(settings.models_dir)

    send = producer_send(app)
    feedback = FeedbackAgent(
        scorers=runtime.scorers,
        store=runtime.store,
        send=send,
        sink=runtime.sink,
        deadletter_topic=settings.topics.deadletter.name,
        event_wait_s=settings.adaptation.event_wait_s,
        metrics=runtime.metrics,
    )
    labels = app.topic(settings.topics.feedback_labels.name, key_type=bytes, value_type=bytes)

    async def join_feedback(stream: StreamT) -> None:
        await feedback.run(stream)

    app.agent(labels, name="feedback")(join_feedback)

    async def request(retrain: RetrainRequest) -> None:
        key, value = retrain.record()
        ack = await send(settings.topics.retrain_requests.name, key, value, None)
        await ack

    check = TriggerCheck(
        settings.adaptation, runtime.scorers, registry, runtime.store, runtime.sink, request
    )

    @app.timer(settings.adaptation.check_interval_s, on_leader=True)
    async def check_triggers() -> None:
        try:
            await check.check()
        except Exception:
            # A store that is busy or restarting must not stop scoring; the next tick retries.
            log.exception("retrain-trigger check failed")

    runtime.watcher = ModelWatcher(
        settings.kafka,
        settings.topics.model_updates,
        runtime.scorers,
        registry,
        partial(load_version, settings),
        runtime.metrics,
    )
