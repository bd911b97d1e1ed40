"""Retrain triggers: enough new labels, a schedule, drift of the predicted labels, or a fall of
the label-free accuracy estimate.

The group's leader worker checks every domain it scores each ``adaptation.check_interval_s``.
A fired trigger is one row in ``retrain_triggers`` (its reason and figures) and one request on
``retrain.requests`` for the trainer. What the checks read is all in the store, so a restarted
or newly elected leader carries on where the last one stopped:

* count: labels of the domain now, against the count recorded with the last trigger;
* schedule: time since the last trigger (or since the live model was made, before any);
* drift: the total variation distance between the labels the live model predicted on the last
  ``drift_window`` results and the labels of its training data (``metadata.data.label_counts``);
* estimate: the mean calibrated confidence of the live version's last ``estimate_window``
  results (``models.calibration``), against the accuracy its calibration was fitted beside
  (``metadata.calibration.accuracy``): more than ``estimate_margin`` below fires.

At most one trigger per domain fires every ``min_interval_s``, so a trainer that refuses a
candidate is not asked again at once for the same reason.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config.settings import AdaptationSettings, DomainName
from models.registry import Registry
from store import queries
from store.readonly import ReadOnlyStore
from store.schema import TRIGGERS_TABLE
from streams.adaptation.messages import RetrainRequest, TriggerReason
from streams.processor import ScorerHolder, Sink

log = logging.getLogger(__name__)

# Publishes a request on retrain.requests; returns once the broker has it.
RequestSender = Callable[[RetrainRequest], Awaitable[None]]


@dataclass(frozen=True)
class TriggerState:
    now: datetime
    labels_total: int
    last_trigger_at: datetime | None
    labels_at_last_trigger: int
    model_created_at: datetime | None
    drift: float | None  # None: fewer recent results than a window, or no training labels
    # The label-free accuracy estimate and the validation accuracy it is held against; None:
    # fewer recent results of the live version than a window, or no calibration record.
    estimate: float | None = None
    validation_accuracy: float | None = None


@dataclass(frozen=True)
class Trigger:
    reason: TriggerReason
    detail: str


def decide(state: TriggerState, settings: AdaptationSettings) -> Trigger | None:
    """The trigger that fires now, if any: count, drift, estimate, then the schedule."""
    last = state.last_trigger_at
    if last is not None and state.now - last < timedelta(seconds=settings.min_interval_s):
        return None
    new_labels = state.labels_total - state.labels_at_last_trigger
    if settings.min_new_labels and new_labels >= settings.min_new_labels:
        return Trigger("count", f"{new_labels} new labels (threshold {settings.min_new_labels})")
    drift = state.drift
    if settings.drift_threshold and drift is not None and drift > settings.drift_threshold:
        return Trigger(
            "drift",
            f"predicted-label distance {drift:.3f} from the training labels "
            f"(threshold {settings.drift_threshold:g})",
        )
    estimate, reference = state.estimate, state.validation_accuracy
    if (
        settings.estimate_margin
        and estimate is not None
        and reference is not None
        and estimate < reference - settings.estimate_margin
    ):
        return Trigger(
            "estimate",
            f"estimated accuracy {estimate:.3f} against {reference:.3f} on validation "
            f"(margin {settings.estimate_margin:g})",
        )
    since = last or state.model_created_at
    if settings.schedule_s and since is not None:
        elapsed = (state.now - since).total_seconds()
        if elapsed >= settings.schedule_s:
            return Trigger("schedule", f"{elapsed:.0f} s since the last retrain")
    return None


def total_variation(counts: Mapping[str, float], reference: Mapping[str, float]) -> float:
    """Half the L1 distance between two label distributions given as counts: 0 equal, 1 disjoint."""
    total, reference_total = sum(counts.values()), sum(reference.values())
    if not total or not reference_total:
        raise ValueError("a distribution needs at least one count")
    labels = set(counts) | set(reference)
    return 0.5 * sum(
        abs(counts.get(label, 0) / total - reference.get(label, 0) / reference_total)
        for label in labels
    )


class TriggerCheck:
    """Reads each domain's state from the store, decides, and fires what is due."""

    def __init__(
        self,
        settings: AdaptationSettings,
        scorers: Mapping[DomainName, ScorerHolder],
        registry: Registry,
        store: ReadOnlyStore,
        sink: Sink,
        request: RequestSender,
    ) -> None:
        self.settings = settings
        self.scorers = scorers
        self.registry = registry
        self.store = store
        self.sink = sink
        self.request = request

    async def check(self) -> list[RetrainRequest]:
        fired = []
        for domain, holder in self.scorers.items():
            state = await self.state(domain, holder.current.version)
            trigger = decide(state, self.settings)
            if trigger is not None:
                fired.append(await self.fire(domain, holder.current.version, trigger, state))
        return fired

    async def state(self, domain: DomainName, version: str) -> TriggerState:
        labels = (await self.store.query(queries.labeled_count(domain))).rows[0][0]
        last = await self.store.query(queries.last_trigger(domain))
        metadata = self.registry.metadata(domain, version)
        created = metadata.get("created_at")
        return TriggerState(
            now=datetime.now(UTC),
            labels_total=int(labels),
            last_trigger_at=_utc(last.rows[0][0]) if last.rows else None,
            labels_at_last_trigger=int(last.rows[0][1]) if last.rows else 0,
            model_created_at=_utc(created) if created else None,
            drift=await self._drift(domain, metadata.get("data", {}).get("label_counts")),
            estimate=await self._estimate(domain, version),
            validation_accuracy=metadata.get("calibration", {}).get("accuracy"),
        )

    async def _drift(self, domain: DomainName, training: Mapping[str, int] | None) -> float | None:
        if not training:
            return None
        window = self.settings.drift_window
        recent = await self.store.query(queries.recent_predictions(domain, window))
        counts = {str(label): int(n) for label, n in recent.rows}
        if sum(counts.values()) < window:
            return None
        return total_variation(counts, training)

    async def _estimate(self, domain: DomainName, version: str) -> float | None:
        window = self.settings.estimate_window
        recent = await self.store.query(queries.recent_confidence(domain, version, window))
        results, mean = recent.rows[0]
        return float(mean) if int(results) >= window else None

    async def fire(
        self, domain: DomainName, version: str, trigger: Trigger, state: TriggerState
    ) -> RetrainRequest:
        request = RetrainRequest(
            request_id=uuid.uuid4().hex,
            domain=domain,
            reason=trigger.reason,
            detail=trigger.detail,
            live_version=version,
            requested_at=state.now,
        )
        await self.request(request)
        await self.sink.write(
            TRIGGERS_TABLE,
            [
                {
                    "request_id": request.request_id,
                    "ts": state.now,
                    "domain": domain,
                    "reason": trigger.reason,
                    "detail": trigger.detail,
                    "live_version": version,
                    "labels_total": state.labels_total,
                }
            ],
        )
        log.info("retrain %s (%s): %s", domain, trigger.reason, trigger.detail)
        return request


def _utc(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
