"""Live model swap: every worker follows ``model.updates`` and switches models between batches.

Each worker reads the whole compacted topic with a consumer of its own (no group: every worker
must see every announcement). An announced version is loaded on a thread of its own while the
old model keeps scoring; then the domain's :class:`ScorerHolder` is pointed at the new scorer.
A batch reads its holder once, before scoring, so each batch is scored wholly by one version,
no event is dropped or scored twice, and every result names the version that scored it.

The registry's live pointer is the truth at start-up: the worker loaded it before it started.
The watcher takes the topic's end offsets first, then compares the registry with what is
loaded (a promotion announced between the worker's load and those offsets is caught here), and
then follows announcements made after those offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from config.settings import DomainName, KafkaSettings, TopicSettings
from models.base import Scorer
from models.errors import one_line
from models.registry import Registry
from streams.adaptation.messages import ModelUpdate
from streams.connection import consumer_options
from streams.observability.metrics import PipelineMetrics
from streams.processor import ScorerHolder

log = logging.getLogger(__name__)

LoadScorer = Callable[[DomainName, str], Scorer]  # (domain, version) -> a ready scorer


class ModelWatcher:
    def __init__(
        self,
        kafka: KafkaSettings,
        topic: TopicSettings,
        scorers: Mapping[DomainName, ScorerHolder],
        registry: Registry,
        load: LoadScorer,
        metrics: PipelineMetrics,
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.scorers = scorers
        self.registry = registry
        self.load = load
        self.metrics = metrics
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            **consumer_options(self.kafka), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        partitions = [TopicPartition(self.topic.name, p) for p in range(self.topic.partitions)]
        consumer.assign(partitions)
        for partition, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(partition, offset)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer), name="model-updates")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        for domain in self.scorers:
            live = self.registry.live_version(domain)
            if live is not None:
                await self.switch(domain, live)
        async for record in consumer:
            try:
                update = ModelUpdate.model_validate_json(record.value or b"")
            except ValidationError as error:
                log.error("ignored a malformed model update at offset %d: %s", record.offset, error)
                continue
            if update.domain in self.scorers:
                await self.switch(update.domain, update.version)

    async def switch(self, domain: DomainName, version: str) -> None:
        """Load ``version`` of ``domain`` in the background and make it score the next batch.
        A version that cannot be loaded (its files changed since it was registered, weights
        that do not match its config, a missing folder) is refused: one log line, a count in
        ``signalyard_model_refusals``, and the current model keeps scoring."""
        holder = self.scorers[domain]
        if holder.current.version == version:
            return
        loop = asyncio.get_running_loop()
        try:
            scorer = await loop.run_in_executor(self._loader, self.load, domain, version)
        except Exception as error:
            self.metrics.model_refusals.labels(domain).inc()
            log.error(
                "%s %s refused, %s keeps scoring: %s",
                domain,
                version,
                holder.current.version,
                one_line(error),
            )
            return
        previous, holder.current = holder.current.version, scorer
        self.metrics.model_swaps.labels(domain).inc()
        log.warning("%s model swapped: %s -> %s", domain, previous, version)
