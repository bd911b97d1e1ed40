"""What the worker's Faust agents (alerts, feedback) and the scoring consumer share."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import EventT

from streams.processor import SourceRecord

log = logging.getLogger(__name__)

# Schedules one record and returns the future of its broker acknowledgement
# (the shape of aiokafka's and Faust's ``producer.send``).
Send = Callable[
    [str, bytes | None, bytes, list[tuple[str, bytes]] | None], Awaitable[Awaitable[Any]]
]


def producer_send(app: faust.App) -> Send:
    """``Send`` through a Faust app's producer: partitioned by key, timestamped by the broker."""

    def send(
        topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None
    ) -> Awaitable[Awaitable[Any]]:
        return app.producer.send(topic, key, value, partition=None, timestamp=None, headers=headers)

    return send


# Exit status of a worker that stops on an error retrying cannot fix (EX_SOFTWARE).
EXIT_FATAL = 70


def source_record(event: EventT) -> SourceRecord:
    message = event.message
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
        key=message.key,
        value=message.value,
    )


def exit_on_failure(task: asyncio.Task[None]) -> None:
    """End the process at once when scoring or delivery fails for good.

    Such a failure (ClickHouse refusing rows, the broker refusing a record) would leave its
    batch unacked and every later commit stuck behind it. Exiting like a crash keeps every
    event after the last commit to be consumed again by the restarted worker or the group;
    ClickHouse collapses the replayed rows.
    """
    if task.cancelled() or task.exception() is None:
        return
    log.critical(
        "%s failed; exiting so that the batch is consumed again",
        task.get_name(),
        exc_info=task.exception(),
    )
    logging.shutdown()
    os._exit(EXIT_FATAL)
