"""What the worker's consumers (scoring, alerts, feedback) share."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from mode import Service

from config.settings import KafkaSettings
from streams.connection import aiokafka_options
from streams.transactions import producer_in_scope

log = logging.getLogger(__name__)

# Schedules one record and returns the future of its broker acknowledgement
# (the shape of aiokafka's ``producer.send``).
Send = Callable[
    [str, bytes | None, bytes, list[tuple[str, bytes]] | None], Awaitable[Awaitable[Any]]
]


class SharedProducer(Service):
    """One aiokafka producer (acks from all replicas) for the worker's alert and feedback
    consumers and retrain requests; ``send`` is a ``Send``. The scoring consumer has its own,
    tuned for large batches."""

    def __init__(self, kafka: KafkaSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kafka = kafka
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        """The worker's producer; while a consumer handles an input partition under
        ``exactly_once``, that partition's transactional producer instead."""
        assert self._producer is not None, "the producer has not started"
        return producer_in_scope() or self._producer

    async def on_start(self) -> None:
        # Created here: aiokafka binds a client to the running event loop.
        self._producer = AIOKafkaProducer(**aiokafka_options(self.kafka), acks="all")
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None
    ) -> Awaitable[Awaitable[Any]]:
        return self.producer.send(topic, value, key=key, headers=headers)


# Exit status of a worker that stops on an error retrying cannot fix (EX_SOFTWARE).
EXIT_FATAL = 70


def exit_on_failure(task: asyncio.Task[None]) -> None:
    """End the process at once when scoring or delivery fails for good.

    Such a failure (ClickHouse refusing rows, the broker refusing a record) would leave its
    batch unacked and every later commit stuck behind it. Exiting like a crash keeps every
    event after the last commit to be consumed again by the restarted worker or the group;
    ClickHouse collapses the replayed rows.
    """
    if task.cancelled() or task.exception() is None:
        return
    exit_fatally(f"{task.get_name()} failed", task.exception())


def exit_fatally(what: str, error: BaseException | None) -> None:
    """Log ``what`` and ``error`` and end the process now, as a crash would: every event after
    the last commit is consumed again by the restarted worker or the group."""
    log.critical("%s; exiting so that the batch is consumed again", what, exc_info=error)
    logging.shutdown()
    os._exit(EXIT_FATAL)
