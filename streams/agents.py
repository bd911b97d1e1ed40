"""The scoring agent of one domain: read, micro-batch, score, deliver, then ack.

Three stages run concurrently so that none waits on the others more than it must:

* the agent's own loop reads events (acks disabled) into the micro-batcher;
* one scoring task takes batch after batch and scores it (the model runs in a thread);
* each scored batch is delivered by its own task (Kafka sends and ClickHouse writes, which
  the sink groups across batches) and only then are its events acked.

Faust commits, per partition, the offset below the first event not yet acked, so a batch whose
delivery finishes early never lets the commit skip over an earlier batch still in flight. At
most ``max_batches_in_flight`` batches wait for delivery; beyond that scoring waits, then the
batcher fills up and reading waits: back-pressure reaches the consumer instead of memory.

Faust's own ``stream.take()`` is not used: it acks a buffered batch in a ``finally`` clause,
so a worker stopping (or an agent failing) mid-batch would ack events never delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence

from faust.types import EventT, StreamT

from streams.batching import MicroBatcher
from streams.observability.metrics import PipelineMetrics
from streams.processor import BatchProcessor, PreparedBatch, SourceRecord

log = logging.getLogger(__name__)

# Exit status of a worker that stops on an error retrying cannot fix (EX_SOFTWARE).
EXIT_FATAL = 70


class ScoringAgent:
    def __init__(
        self,
        processor: BatchProcessor,
        max_batch_size: int,
        max_wait_s: float,
        max_batches_in_flight: int,
        metrics: PipelineMetrics,
    ) -> None:
        self.processor = processor
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_batches_in_flight = max_batches_in_flight

    async def run(self, stream: StreamT) -> None:
        """The Faust agent body: consume the stream until the worker stops."""
        stream = stream.noack()
        batcher: MicroBatcher[EventT] = MicroBatcher(self.max_batch_size, self.max_wait_s)
        scoring = asyncio.create_task(self._score(batcher, stream), name=f"score-{self.domain}")
        scoring.add_done_callback(exit_on_failure)
        try:
            async for event in stream.events():
                await batcher.put(event)
        finally:
            scoring.cancel()

    @property
    def domain(self) -> str:
        return self.processor.domain

    async def _score(self, batcher: MicroBatcher[EventT], stream: StreamT) -> None:
        slots = asyncio.Semaphore(self.max_batches_in_flight)
        deliveries: set[asyncio.Task[None]] = set()
        try:
            while True:
                events = await batcher.next_batch()
                await slots.acquire()
                started = time.perf_counter()
                prepared = await self.processor.prepare([source_record(event) for event in events])
                self.metrics.scored(self.domain, len(events), time.perf_counter() - started)
                task = asyncio.create_task(self._deliver(prepared, events, stream, slots))
                task.add_done_callback(exit_on_failure)
                deliveries.add(task)
                task.add_done_callback(deliveries.discard)
        finally:
            # Stopping: undelivered batches stay unacked, so they are consumed again.
            for task in deliveries:
                task.cancel()

    async def _deliver(
        self,
        prepared: PreparedBatch,
        events: Sequence[EventT],
        stream: StreamT,
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            await self.processor.deliver(prepared)
            self.metrics.delivered(self.domain, prepared)
            for event in events:
                await stream.ack(event)
        finally:
            slots.release()


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
