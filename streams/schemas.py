"""The data contracts on the wire: raw events in, scored results out (JSON, see DESIGN.md).

Raw events are validated strictly (a string where a number belongs is a wrong type, not a
number to guess at); unknown extra fields are ignored so producers can add fields first and
workers learn them later. ``ts`` is ISO 8601; a time without a zone is taken as UTC.

A scored result has exactly the columns of the domain's ``*_scores`` ClickHouse table, so the
same object is the Kafka message and the ClickHouse row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from config.settings import Domain


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
Measure = Annotated[float, Field(allow_inf_nan=False)]


class RawEvent(BaseModel):
    """Fields every raw event has. ``domain`` is optional; when given it must match the topic."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)

    id: Name
    ts: Timestamp
    domain: str | None = None

    @property
    def entity(self) -> str:
        """The key that keeps one entity's events in order on one partition."""
        raise NotImplementedError


class NewsEvent(RawEvent):
    source: Name
    ticker: Name | None = None
    tickers: list[Name] = Field(default_factory=list)
    headline: Text
    body: str | None = None

    @model_validator(mode="after")
    def _has_ticker(self) -> NewsEvent:
        if not self.ticker and not self.tickers:
            raise ValueError("a news event needs ticker or tickers")
        return self

    @property
    def entity(self) -> str:
        return self.ticker or self.tickers[0]

    @property
    def all_tickers(self) -> list[str]:
        return self.tickers or [self.entity]


class TicketEvent(RawEvent):
    customer_id: Name
    channel: Name
    subject: str | None = None
    text: Text

    @property
    def entity(self) -> str:
        return self.customer_id


class SensorEvent(RawEvent):
    machine_id: Name
    machine_type: Literal["L", "M", "H"] = Field(alias="type")
    air_temp_k: Annotated[Measure, Field(gt=0)]
    process_temp_k: Annotated[Measure, Field(gt=0)]
    rpm: Annotated[Measure, Field(ge=0)]
    torque_nm: Measure
    tool_wear_min: Annotated[Measure, Field(ge=0)]
    message: str | None = None

    @property
    def entity(self) -> str:
        return self.machine_id


Event = NewsEvent | TicketEvent | SensorEvent

EVENT_SCHEMAS: dict[Domain, type[RawEvent]] = {
    "news": NewsEvent,
    "tickets": TicketEvent,
    "sensors": SensorEvent,
}


class ScoredResult(BaseModel):
    """What every scored result carries besides the domain's predictions."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    ts: datetime
    model_name: str
    model_version: str
    batch_size: int
    latency_ms: float  # from the record's Kafka timestamp (ingest) to the end of scoring
    scored_at: datetime
    # The calibrated probability that the model's decision is right; averaged over a window it
    # estimates the live model's accuracy without labels (models.calibration). 0: not known, as
    # in results written before it existed (and in their stored rows), which estimates skip.
    confidence: float = 0.0


class NewsScore(ScoredResult):
    ticker: str
    label: str
    p_negative: float
    p_neutral: float
    p_positive: float
    sentiment: float


class TicketScore(ScoredResult):
    customer_id: str
    intent: str
    top_intents: list[str]
    top_probabilities: list[float]
    risk_score: float
    risk_level: str


class SensorScore(ScoredResult):
    machine_id: str
    failure_probability: float
    failure_mode: str
    defect: bool


SCORE_SCHEMAS: dict[Domain, type[ScoredResult]] = {
    "news": NewsScore,
    "tickets": TicketScore,
    "sensors": SensorScore,
}

# The label a result is counted under in summaries: sentiment, risk level or defect flag.
LABEL_FIELDS: dict[Domain, str] = {"news": "label", "tickets": "risk_level", "sensors": "defect"}
# The field a feedback label is the truth for: what analysts label (and models train on).
FEEDBACK_FIELDS: dict[Domain, str] = {
    "news": "label",
    "tickets": "intent",
    "sensors": "failure_mode",
}
