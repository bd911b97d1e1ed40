"""Tickets: customer-support tickets of a bank, scored for intent and risk, keyed by customer.

``tickets.raw`` carries ``id, ts, customer_id, channel, subject?, text``; ``tickets.scored``
the top intents with their probabilities, the risk score in [0, 1] (the probability mass on
high-risk intents plus half the mass on medium ones) and its level (low, medium, high).
"""

from __future__ import annotations

from domains import register
from domains.base import Category, Column, Domain, Name, RawEvent, ScoredResult, Text


class TicketEvent(RawEvent):
    customer_id: Name
    channel: Name
    subject: str | None = None
    text: Text

    @property
    def entity(self) -> str:
        return self.customer_id


class TicketScore(ScoredResult):
    customer_id: str
    intent: Category
    top_intents: list[str]
    top_probabilities: list[float]
    risk_score: float
    risk_level: Category


def model_input(event: TicketEvent) -> str:
    return f"{event.subject}. {event.text}" if event.subject else event.text


TICKETS = register(
    Domain(
        name="tickets",
        task="intent_risk",
        event=TicketEvent,
        result=TicketScore,
        entity="customer_id",
        event_columns=(
            Column("customer_id", "String"),
            Column("channel", "LowCardinality(String)"),
            Column("subject", "String", optional=True),
            Column("text", "String"),
        ),
        model_input=model_input,
        summary_field="risk_level",
        feedback_field="intent",
        score_field="risk_score",
    )
)
