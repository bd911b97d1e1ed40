"""Pure transformations around scoring: model inputs, ClickHouse event rows, scored results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from config.settings import Domain
from models.base import ModelInput, Prediction, Scorer, SensorReading
from streams.schemas import (
    SCORE_SCHEMAS,
    Event,
    NewsEvent,
    ScoredResult,
    SensorEvent,
    TicketEvent,
)


def _news_input(event: NewsEvent) -> str:
    return f"{event.headline} {event.body}" if event.body else event.headline


def _ticket_input(event: TicketEvent) -> str:
    return f"{event.subject}. {event.text}" if event.subject else event.text


def _sensor_input(event: SensorEvent) -> SensorReading:
    return SensorReading(
        machine_type=event.machine_type,
        air_temp_k=event.air_temp_k,
        process_temp_k=event.process_temp_k,
        rpm=event.rpm,
        torque_nm=event.torque_nm,
        tool_wear_min=event.tool_wear_min,
    )


MODEL_INPUTS: dict[Domain, Callable[[Any], ModelInput]] = {
    "news": _news_input,
    "tickets": _ticket_input,
    "sensors": _sensor_input,
}


def _news_row(event: NewsEvent) -> dict[str, Any]:
    return {
        "ticker": event.entity,
        "tickers": event.all_tickers,
        "source": event.source,
        "headline": event.headline,
        "body": event.body or "",
    }


def _ticket_row(event: TicketEvent) -> dict[str, Any]:
    return {
        "customer_id": event.customer_id,
        "channel": event.channel,
        "subject": event.subject or "",
        "text": event.text,
    }


def _sensor_row(event: SensorEvent) -> dict[str, Any]:
    return {**_sensor_input(event), "machine_id": event.machine_id, "message": event.message or ""}


_EVENT_ROWS: dict[Domain, Callable[[Any], dict[str, Any]]] = {
    "news": _news_row,
    "tickets": _ticket_row,
    "sensors": _sensor_row,
}

ENTITY_COLUMNS: dict[Domain, str] = {
    "news": "ticker",
    "tickets": "customer_id",
    "sensors": "machine_id",
}


def model_input(domain: Domain, event: Event) -> ModelInput:
    return MODEL_INPUTS[domain](event)


def event_row(domain: Domain, event: Event, ingested_at: datetime) -> dict[str, Any]:
    """The event as a row of ``<domain>_events``."""
    row = _EVENT_ROWS[domain](event)
    return {"event_id": event.id, "ts": event.ts, **row, "ingested_at": ingested_at}


def scored_result(
    domain: Domain,
    event: Event,
    prediction: Prediction,
    scorer: Scorer,
    batch_size: int,
    ingested_at: datetime,
    scored_at: datetime,
) -> ScoredResult:
    """The result of one event: a message of ``<domain>.scored`` and a row of ``<domain>_scores``.

    Validated like any message: pydantic's compiled validation costs less than building the
    model unvalidated, and it keeps a model's stray output type off the wire.
    """
    return SCORE_SCHEMAS[domain](
        event_id=event.id,
        ts=event.ts,
        **{ENTITY_COLUMNS[domain]: event.entity},
        **prediction,
        model_name=scorer.model_name,
        model_version=scorer.version,
        batch_size=batch_size,
        latency_ms=(scored_at - ingested_at).total_seconds() * 1000.0,
        scored_at=scored_at,
    )
