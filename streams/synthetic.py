"""A seeded, realistic synthetic world: tickers in the news, customers writing tickets, machines
drifting toward failure. It feeds the demo and the tests, and writes the small labeled CSVs
that bootstrap a model per domain when the registry is empty, so nothing depends on data
outside the project.

* News: each ticker has a sentiment regime that shifts now and then (a good quarter, a
  scandal); headlines are drawn from templates of the regime's tone.
* Tickets: each customer has a mood; an upset customer writes about high-risk intents (fraud,
  lost cards, missing refunds) more often.
* Sensors: machines of type L, M and H wear their tools, heat up and strain; their failure
  modes follow the AI4I 2020 rules (tool wear, heat dissipation, power, overstrain), and
  about 3.3 % of readings fail, near AI4I's 3.4 %.

``malformed_fraction`` of the events come out broken in one of the ways validation rejects,
so a demo shows a real dead-letter count.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import domains
from config.settings import DomainName
from models.base import ModelInput

COMPANIES: dict[str, str] = {
    "AAPL": "Apple",
    "MSFT": "Microsoft",
    "NVDA": "Nvidia",
    "AMZN": "Amazon",
    "NOK": "Nokia",
    "SAP": "SAP",
    "SHEL": "Shell",
    "VOW": "Volkswagen",
    "SIE": "Siemens",
    "ASML": "ASML",
    "JPM": "JPMorgan",
    "NESN": "Nestle",
}
SOURCES = ("reuters", "bloomberg", "dowjones", "newswire", "ft")
HEADLINES: dict[str, tuple[str, ...]] = {
    "positive": (
        "{company} beats quarterly earnings estimates as revenue climbs {pct}%",
        "{company} raises full-year outlook on strong demand",
        "{company} shares jump {pct}% after record {segment} sales",
        "{company} wins multi-year {segment} contract worth EUR {amount} million",
        "Analysts upgrade {company} to buy, citing margin expansion",
        "{company} announces share buyback of USD {amount} million",
        "{company} operating profit rose to EUR {amount} million from a year earlier",
    ),
    "negative": (
        "{company} cuts full-year guidance as {segment} demand weakens",
        "{company} shares slide {pct}% after profit warning",
        "{company} to lay off {count} staff amid restructuring",
        "Regulators open probe into {company} {segment} practices",
        "{company} misses estimates as costs rise {pct}%",
        "{company} operating loss widened to EUR {amount} million",
        "Analysts downgrade {company} on weaker {segment} orders",
    ),
    "neutral": (
        "{company} to present at investor conference next week",
        "{company} appoints new head of {segment}",
        "{company} schedules quarterly results release for {day}",
        "{company} completes previously announced reorganisation of {segment} unit",
        "{company} annual general meeting to be held in {city}",
        "{company} says {segment} volumes in line with last year",
    ),
}
SEGMENTS = ("cloud", "automotive", "retail", "semiconductor", "network", "energy", "payments")
CITIES = ("Helsinki", "Frankfurt", "London", "New York", "Zurich", "Amsterdam")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
BODIES: dict[str, tuple[str, ...]] = {
    "positive": ("The company said growth was broad-based.", "Shares rose in early trading."),
    "negative": ("The company blamed weaker orders.", "Shares fell in early trading."),
    "neutral": ("The company gave no further details.", "The statement was released today."),
}

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

# AI4I 2020 failure thresholds.
OVERSTRAIN_LIMIT = {"L": 11_000.0, "M": 12_000.0, "H": 13_000.0}
TOOL_WEAR_PER_STEP = {"L": 5.0, "M": 3.0, "H": 2.0}  # minutes added per reading
FAILURE_MODES = ("TWF", "HDF", "PWF", "OSF", "RNF")
MALFORMATIONS = (
    "not JSON",
    "invalid UTF-8",
    "missing field",
    "wrong type",
    "empty text",
    "oversized",
    "unknown domain",
)


@dataclass
class Machine:
    machine_id: str
    machine_type: str
    air_temp_k: float
    tool_wear_min: float = 0.0
    strain: float = 0.0  # grows on machines drifting toward a failure


@dataclass
class World:
    """The state of the synthetic world; every draw comes from one seeded generator."""

    seed: int = 7
    customers: int = 200
    machines: int = 40
    rng: random.Random = field(init=False)
    regimes: dict[str, str] = field(init=False)
    moods: dict[str, float] = field(init=False)
    fleet: list[Machine] = field(init=False)
    counter: int = 0
    clock: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.regimes = {ticker: "neutral" for ticker in COMPANIES}
        self.moods = {f"C{n:05d}": self.rng.random() for n in range(self.customers)}
        self.fleet = [
            Machine(
                machine_id=f"M{n:03d}",
                machine_type=self.rng.choices(("L", "M", "H"), weights=(5, 3, 2))[0],
                air_temp_k=self.rng.gauss(300.0, 2.0),
            )
            for n in range(self.machines)
        ]

    def _next_id(self, domain: DomainName) -> str:
        self.counter += 1
        return f"{domain[0]}-{self.seed}-{self.counter:09d}"

    def _tick(self) -> str:
        step = timedelta(milliseconds=self.rng.randint(1, 40))
        # A burst of events must not run ahead of the wall clock: the pipeline refuses event
        # times far ahead of their arrival as a bad clock. Past the present, a millisecond each.
        ahead = max(datetime.now(UTC), self.clock + timedelta(milliseconds=1))
        self.clock = min(self.clock + step, ahead)
        return self.clock.isoformat(timespec="milliseconds")

    def news(self) -> tuple[dict[str, Any], str]:
        """A news event and its true sentiment."""
        rng = self.rng
        ticker = rng.choice(list(COMPANIES))
        if rng.random() < 0.05:
            self.regimes[ticker] = rng.choice(("positive", "negative", "neutral"))
        regime = self.regimes[ticker]
        tone = regime if rng.random() < 0.7 else rng.choice(("positive", "negative", "neutral"))
        headline = rng.choice(HEADLINES[tone]).format(
            company=COMPANIES[ticker],
            pct=rng.randint(2, 25),
            segment=rng.choice(SEGMENTS),
            amount=rng.randint(5, 900),
            count=rng.randint(50, 5000),
            day=rng.choice(DAYS),
            city=rng.choice(CITIES),
        )
        event: dict[str, Any] = {
            "id": self._next_id("news"),
            "ts": self._tick(),
            "source": rng.choice(SOURCES),
            "ticker": ticker,
            "tickers": [ticker] + ([rng.choice(list(COMPANIES))] if rng.random() < 0.1 else []),
            "headline": headline,
        }
        if rng.random() < 0.5:
            event["body"] = rng.choice(BODIES[tone])
        return event, tone

    def ticket(self) -> tuple[dict[str, Any], str]:
        """A ticket event and its true intent."""
        rng = self.rng
        customer = rng.choice(list(self.moods))
        upset = self.moods[customer]
        weights = [1.0 + 4.0 * upset * RISK_WEIGHTS[level] for level, _ in INTENTS.values()]
        intent = rng.choices(list(INTENTS), weights=weights)[0]
        text = rng.choice(OPENERS) + rng.choice(INTENTS[intent][1]) + rng.choice(CLOSERS)
        event: dict[str, Any] = {
            "id": self._next_id("tickets"),
            "ts": self._tick(),
            "customer_id": customer,
            "channel": rng.choice(CHANNELS),
            "text": text,
        }
        subject = rng.choice(SUBJECTS)
        if subject:
            event["subject"] = subject
        return event, intent

    def sensor(self) -> tuple[dict[str, Any], dict[str, int]]:
        """A sensor reading and its failure flags (AI4I columns)."""
        rng = self.rng
        machine = rng.choice(self.fleet)
        machine.tool_wear_min += TOOL_WEAR_PER_STEP[machine.machine_type] * rng.random()
        if rng.random() < 0.03:
            machine.strain = min(1.0, machine.strain + rng.random() * 0.5)
        air = machine.air_temp_k + rng.gauss(0, 0.3)
        process = air + 10.0 - 3.0 * machine.strain + rng.gauss(0, 0.5)
        rpm = max(1100.0, rng.gauss(1540.0, 120.0) - 300.0 * machine.strain)
        torque = max(3.0, rng.gauss(40.0 + 20.0 * machine.strain, 6.0))
        flags = _failure_flags(machine, air, process, rpm, torque, rng)
        reading = {
            "id": self._next_id("sensors"),
            "ts": self._tick(),
            "machine_id": machine.machine_id,
            "type": machine.machine_type,
            "air_temp_k": round(air, 1),
            "process_temp_k": round(process, 1),
            "rpm": round(rpm),
            "torque_nm": round(torque, 1),
            "tool_wear_min": round(machine.tool_wear_min),
        }
        if any(flags.values()):
            reading["message"] = "operator: unusual noise near spindle"
            # A failed machine is repaired: new tool, strain relieved.
            machine.tool_wear_min = 0.0
            machine.strain = 0.0
        return reading, flags


def _failure_flags(
    machine: Machine, air: float, process: float, rpm: float, torque: float, rng: random.Random
) -> dict[str, int]:
    wear = machine.tool_wear_min
    power_w = torque * rpm * 2 * math.pi / 60
    return {
        "TWF": int(wear >= 200 and rng.random() < 0.3),
        "HDF": int(process - air < 8.6 and rpm < 1380),
        "PWF": int(power_w < 3500 or power_w > 9000),
        "OSF": int(wear * torque > OVERSTRAIN_LIMIT[machine.machine_type]),
        "RNF": int(rng.random() < 0.001),
    }


def labeled(world: World, domain: DomainName) -> tuple[dict[str, Any], str]:
    """The next event of ``domain`` and its true label, as feedback gives one: a sentiment, an
    intent, or a failure mode ("none" when the reading did not fail)."""
    draw: Callable[[], tuple[dict[str, Any], Any]] = getattr(world, _DRAWS[domain])
    event, truth = draw()
    if domain == "sensors":
        truth = next((mode for mode in FAILURE_MODES if truth[mode]), "none")
    return event, truth


def events(
    world: World, domain: DomainName, malformed_fraction: float = 0.0
) -> Iterator[tuple[bytes, bytes]]:
    """Endless (key, value) records of the domain's raw topic."""
    while True:
        event, _ = labeled(world, domain)
        key = str(event[domains.get(domain).entity]).encode()
        if world.rng.random() < malformed_fraction:
            yield key, malform(event, domain, world.rng)
        else:
            yield key, json.dumps(event).encode()


_DRAWS: dict[DomainName, str] = {"news": "news", "tickets": "ticket", "sensors": "sensor"}
_TEXT_FIELDS: dict[DomainName, str] = {
    "news": "headline",
    "tickets": "text",
    "sensors": "machine_id",
}
_NUMBER_FIELDS: dict[DomainName, str] = {"news": "ts", "tickets": "ts", "sensors": "rpm"}


def malform(event: dict[str, Any], domain: DomainName, rng: random.Random) -> bytes:
    """The event broken in one of the ways validation must reject."""
    kind = rng.choice(MALFORMATIONS)
    broken = dict(event)
    if kind == "not JSON":
        return json.dumps(broken).encode()[:-7]
    if kind == "invalid UTF-8":
        return json.dumps(broken).encode().replace(b'"id"', b'"\xff\xfeid"', 1)
    if kind == "missing field":
        broken.pop("id")
    elif kind == "wrong type":
        broken[_NUMBER_FIELDS[domain]] = "soon" if domain != "sensors" else "fast"
    elif kind == "empty text":
        broken[_TEXT_FIELDS[domain]] = "   "
    elif kind == "oversized":
        broken["padding"] = "x" * 70_000
    else:
        broken["domain"] = "weather"
    return json.dumps(broken).encode()


def write_training_csv(domain: DomainName, path: Path, rows: int, seed: int = 11) -> Path:
    """Labeled rows in the formats ``train_model`` reads (those of ../shared/data)."""
    world = World(seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if domain == "news":
            writer.writerow(["text", "label"])
            for _ in range(rows):
                event, tone = world.news()
                writer.writerow([event_input("news", event), tone])
        elif domain == "tickets":
            writer.writerow(["text", "intent"])
            for _ in range(rows):
                event, intent = world.ticket()
                writer.writerow([event_input("tickets", event), intent])
        else:
            writer.writerow(AI4I_COLUMNS)
            for n in range(rows):
                reading, flags = world.sensor()
                writer.writerow(_ai4i_row(n + 1, reading, flags))
    return path


def write_taxonomy(path: Path) -> Path:
    """The risk taxonomy of the synthetic intents, in the format of ../shared/data."""
    levels = {intent: level for intent, (level, _) in INTENTS.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"levels": levels, "weights": RISK_WEIGHTS}, indent=1), "utf-8")
    return path


AI4I_COLUMNS = (
    "UDI",
    "Product ID",
    "Type",
    "Air temperature [K]",
    "Process temperature [K]",
    "Rotational speed [rpm]",
    "Torque [Nm]",
    "Tool wear [min]",
    "Machine failure",
    *FAILURE_MODES,
)


def _ai4i_row(udi: int, reading: dict[str, Any], flags: dict[str, int]) -> list[Any]:
    return [
        udi,
        f"{reading['type']}{udi:05d}",
        reading["type"],
        reading["air_temp_k"],
        reading["process_temp_k"],
        reading["rpm"],
        reading["torque_nm"],
        reading["tool_wear_min"],
        int(any(flags.values())),
        *(flags[mode] for mode in FAILURE_MODES),
    ]


def event_input(domain: DomainName, event: dict[str, Any]) -> ModelInput:
    """What the worker gives the model for this event: its text, or its reading."""
    return domains.get(domain).model_input(
        domains.get(domain).event.model_validate_json(json.dumps(event))
    )
