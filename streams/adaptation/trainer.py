"""The trainer: a process of its own that turns retrain requests into gated candidates.

It consumes ``retrain.requests`` in its own consumer group (``<app_id>-trainer``), one request at a
time; training runs on a thread, off the event loop, so the consumer keeps its group membership. For
each request it reads the domain's feedback from the store (and, for a student with a teacher, its
recent unlabeled events), runs ``models.training.retraining.retrain``, announces a promotion on
``model.updates``, and only then commits the request's offset: a trainer that crashes mid-way trains
the request again. A request made before the last finished round of its domain read its labels is
skipped as superseded. A malformed request is dead-lettered with its reason; one that fails (the
store unreachable, say) is logged and dropped, to be asked again.

The store is read through ``store.readonly.query_store``: a ClickHouse server directly, an
embedded store through its worker's SQL endpoint (so set ``pipeline.web_port``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from config.settings import DomainName, Settings
from models.registry import Registry
from models.serving.loading import LoadedScorer, load_folder
from models.training.retraining import LabeledRow, RetrainOutcome, retrain
from store import queries
from store.readonly import query_store
from streams.adaptation.announce import announce, live_update
from streams.adaptation.messages import RetrainRequest
from streams.connection import aiokafka_options, consumer_options
from streams.processor import dead_letter
from streams.stored_events import event_input
from streams.validation import Rejected, describe

log = logging.getLogger(__name__)

# Training a large model can take an hour; the group must not give the request away meanwhile.
MAX_POLL_INTERVAL_MS = 4 * 3600 * 1000


class Trainer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry(settings.models_dir)
        # When each domain's last finished round read its labels: a request made before that
        # asked for labels that round already used.
        self.labels_read: dict[DomainName, datetime] = {}
        # The rounds train with torch's own threads (one per core); the gate's loads set the
        # workers' count (``pipeline.torch_threads``) for judging, so each round sets it back.
        self.training_threads = torch.get_num_threads()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume requests until ``stop`` is set."""
        settings = self.settings
        consumer = AIOKafkaConsumer(
            settings.topics.retrain_requests.name,
            **consumer_options(settings.kafka),
            group_id=f"{settings.pipeline.app_id}-trainer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all")
        await consumer.start()
        await producer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=1)
                for records in batches.values():
                    for record in records:
                        await self.handle(record, producer)
                        await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()

    async def handle(self, record: ConsumerRecord, producer: AIOKafkaProducer) -> None:
        try:
            request = RetrainRequest.model_validate_json(record.value or b"")
        except ValidationError as error:
            reason = f"not a retrain request: {describe(error)}"
            log.error("offset %d of %s: %s", record.offset, record.topic, reason)
            letter = dead_letter(
                record,
                Rejected("invalid retrain request", reason),
                datetime.now(UTC),
            )
            await producer.send_and_wait(
                self.settings.topics.deadletter.name,
                letter.payload,
                key=letter.key,
                headers=letter.headers(),
            )
            return
        last = self.labels_read.get(request.domain)
        if last is not None and request.requested_at <= last:
            log.warning("%s request %s superseded: skipped", request.domain, request.request_id)
            return
        started = datetime.now(UTC)
        try:
            outcome = await self.train(request)
        except Exception:
            # A request is cheap to make again (the triggers fire again, or a person asks);
            # a trainer stuck on one it cannot serve would serve none.
            log.exception("%s request %s failed", request.domain, request.request_id)
            return
        self.labels_read[request.domain] = started
        log.warning(
            "%s request %s (%s): %s%s%s",
            request.domain,
            request.request_id,
            request.reason,
            f"adapted teacher {outcome.teacher_version}, " if outcome.teacher_version else "",
            f"candidate {outcome.version}, " if outcome.version else "",
            outcome.reason,
        )
        if outcome.promoted:
            update = live_update(self.registry, request.domain, f"gate: {outcome.reason}")
            await announce(self.settings, update)

    async def train(self, request: RetrainRequest) -> RetrainOutcome:
        domain = request.domain
        loop = asyncio.get_running_loop()
        labeled = await loop.run_in_executor(None, self._labels, domain)

        def load(folder: Path) -> LoadedScorer:
            # The gate judges the models as the workers will run them, with their threads.
            return load_folder(self.settings, folder)

        def round_of_training() -> RetrainOutcome:
            torch.set_num_threads(self.training_threads)
            return retrain(
                domain,
                self.registry,
                labeled,
                self.settings.adaptation,
                load,
                request.model_dump(mode="json"),
                lambda limit: self._unlabeled(domain, limit),
            )

        return await loop.run_in_executor(None, round_of_training)

    def _unlabeled(self, domain: DomainName, limit: int) -> list[str]:
        """Texts of the domain's most recent events that nobody labeled (for a teacher)."""
        result = query_store(self.settings, queries.unlabeled_events(domain, limit))
        return [
            str(event_input(domain, dict(zip(result.columns, values, strict=True))))
            for values in result.rows
        ]

    def _labels(self, domain: DomainName) -> list[LabeledRow]:
        result = query_store(self.settings, queries.labeled_events(domain))
        return [LabeledRow(event_id, label, text) for event_id, label, text, _ in result.rows]
