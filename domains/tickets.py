"""Tickets: customer-support tickets of a bank, scored for intent and risk, keyed by customer.

``tickets.raw`` carries ``id, ts, customer_id, channel, subject?, text``; ``tickets.scored``
the top intents with their probabilities, the risk score in [0, 1] (the probability mass on
high-risk intents plus half the mass on medium ones) and its level (low, medium, high).
"""

from __future__ import annotations

import random
from typing import Any

from domains import register
from domains.base import (
    Category,
    Column,
    Domain,
    Name,
    Panel,
    RawEvent,
    ScoredResult,
    Simulation,
    Text,
)


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


# The synthetic world: each customer has a mood; an upset customer writes about high-risk
# intents (fraud, lost cards, missing refunds) more often.
# Support intents with their risk level, and how customers put them.
INTENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "compromised_card": (
        "high",
        (
            "I think someone has been using my card, there are payments I did not make",
            "my card details were stolen, please block it now",
            "there are transactions from another country that were not me",
        ),
    ),
    "lost_or_stolen_card": (
        "high",
        (
            "I lost my card yesterday and need it blocked",
            "my wallet was stolen with my debit card in it",
            "cannot find my card anywhere, please freeze it",
        ),
    ),
    "refund_not_showing_up": (
        "high",
        (
            "the merchant refunded me two weeks ago but the money never arrived",
            "still waiting for my refund, it is not on my account",
            "refund was issued but my balance has not changed",
        ),
    ),
    "transfer_not_received": (
        "medium",
        (
            "my transfer has not reached the recipient after three days",
            "I sent money to my friend and they did not get it",
            "the bank transfer is still pending, where is it",
        ),
    ),
    "card_payment_fee_charged": (
        "medium",
        (
            "why was I charged an extra fee for a card payment",
            "there is a fee on my statement I do not understand",
            "I was charged for paying by card abroad",
        ),
    ),
    "declined_card_payment": (
        "medium",
        (
            "my card was declined at the supermarket",
            "payment declined online even though I have money",
            "why does my card keep getting declined",
        ),
    ),
    "change_pin": (
        "low",
        (
            "how do I change my PIN",
            "I would like to set a new PIN for my card",
            "where can I update my card PIN",
        ),
    ),
    "activate_my_card": (
        "low",
        (
            "how do I activate my new card",
            "my card arrived, what do I need to do to start using it",
            "activation of the new card please",
        ),
    ),
    "exchange_rate": (
        "low",
        (
            "what exchange rate do you use for euros",
            "how is the currency conversion rate calculated",
            "is the exchange rate better on weekdays",
        ),
    ),
}
RISK_WEIGHTS = {"low": 0.0, "medium": 0.5, "high": 1.0}
CHANNELS = ("email", "chat", "phone", "web")
SUBJECTS = ("Help needed", "Question about my account", "Urgent", "Card issue", None, None)
OPENERS = ("", "hi, ", "hello, ", "good morning, ", "please help: ")
CLOSERS = ("", " thanks", " thank you", ". this is urgent!", " - please reply soon")
CUSTOMERS = 200  # of the synthetic world
STREAMED_CUSTOMERS = 500  # of real rows streamed by the demo


class TicketsWorld(Simulation):
    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.moods = {f"C{n:05d}": rng.random() for n in range(CUSTOMERS)}

    def draw(self) -> tuple[dict[str, Any], str]:
        """A ticket event and its true intent."""
        rng = self.rng
        customer = rng.choice(list(self.moods))
        upset = self.moods[customer]
        weights = [1.0 + 4.0 * upset * RISK_WEIGHTS[level] for level, _ in INTENTS.values()]
        intent = rng.choices(list(INTENTS), weights=weights)[0]
        text = rng.choice(OPENERS) + rng.choice(INTENTS[intent][1]) + rng.choice(CLOSERS)
        event: dict[str, Any] = {
            "customer_id": customer,
            "channel": rng.choice(CHANNELS),
            "text": text,
        }
        subject = rng.choice(SUBJECTS)
        if subject:
            event["subject"] = subject
        return event, intent

    def summary(self, label: str) -> str:
        return INTENTS[label][0]

    def taxonomy(self) -> dict[str, Any]:
        levels = {intent: level for intent, (level, _) in INTENTS.items()}
        return {"levels": levels, "weights": RISK_WEIGHTS}


def event_fields(text: str, source: str, rng: random.Random) -> dict[str, Any]:
    """A labeled query as a ticket of a customer drawn at random, on a channel drawn too."""
    customer = f"C{rng.randrange(STREAMED_CUSTOMERS):05d}"
    return {"customer_id": customer, "channel": rng.choice(CHANNELS), "text": text}


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
        panel=Panel(
            "High-risk tickets (share, 10 s)",
            """SELECT {bucket} AS t, 'high risk' AS series, avg(risk_level = 'high') AS value
            FROM tickets_scores FINAL WHERE {in_window} GROUP BY t ORDER BY t""",
            y_max=1.0,
            percent=True,
        ),
        simulation=TicketsWorld,
        event_fields=event_fields,
        data_sets=("banking77",),
        taxonomy_file="banking77/risk_levels.json",
    )
)
