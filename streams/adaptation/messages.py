"""The messages of domain adaptation (JSON on the wire, see DESIGN.md).

* ``feedback.labels``: :class:`FeedbackLabel`, an analyst's true label for a scored event;
* ``retrain.requests``: :class:`RetrainRequest`, a fired trigger (or a person) asking the
  trainer for a candidate;
* ``model.updates`` (compacted, keyed by domain): :class:`ModelUpdate`, the version that is
  live now; every worker switches to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from domains import RegisteredName
from domains.base import Name, Timestamp
from models.data import FAILURE_MODES, SENTIMENT_LABELS
from models.tasks import Task

# Sensor labels are what a scored reading's failure_mode holds ("none" or a mode), plus
# "failure" for a failure whose mode the labeler does not know.
SENSOR_LABELS: tuple[str, ...] = ("none", *FAILURE_MODES, "failure")

TriggerReason = Literal["count", "schedule", "drift", "estimate", "manual"]


class FeedbackLabel(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: Name
    domain: RegisteredName
    label: Name
    labeler: Name
    ts: Timestamp


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str
    domain: RegisteredName
    reason: TriggerReason
    detail: str
    live_version: str | None
    requested_at: datetime

    def record(self) -> tuple[bytes, bytes]:
        """(key, value) on retrain.requests: keyed by domain, so its requests stay in order."""
        return self.domain.encode(), self.model_dump_json().encode()


class ModelUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: RegisteredName
    version: str
    model_name: str
    reason: str  # "gate: ...", "promote", "rollback"
    announced_at: datetime

    def record(self) -> tuple[bytes, bytes]:
        """(key, value) on the compacted model.updates: the latest per domain is kept."""
        return self.domain.encode(), self.model_dump_json().encode()


def known_labels(task: Task, model_labels: Sequence[str]) -> tuple[str, ...]:
    """The labels feedback may give to a ``task`` model; intent_risk labels intents, which are
    the live model's own labels."""
    if task == "sentiment":
        return SENTIMENT_LABELS
    if task == "defect":
        return SENSOR_LABELS
    return tuple(model_labels)
