"""A seeded synthetic world: every registered domain's simulation (``Domain.simulation``: tickers
in the news, customers writing tickets, machines drifting toward failure, ...) drawing from one
seed. It feeds the demo and the tests, and writes the small labeled CSVs that bootstrap a
model per domain when the registry is empty, so nothing depends on data outside the project.

``malformed_fraction`` of the events come out broken in one of the ways validation rejects,
so a demo shows a real dead-letter count.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import domains
from config.settings import DomainName
from domains.base import Simulation
from models.base import ModelInput
from models.data import AI4I_COLUMNS, ai4i_row
from models.tasks import LABEL_COLUMNS, TEXT_TASKS

MALFORMATIONS = (
    "not JSON",
    "invalid UTF-8",
    "missing field",
    "wrong type",
    "empty key",
    "oversized",
    "unknown domain",
)


@dataclass
class World:
    """The state of the synthetic world: each domain's simulation draws from a generator of its
    own, the ids and times of events from the world's; all seeded by ``seed``. Event ids are
    ``<d>-<seed>-<n>``, or ``<d>-<seed>-<run>-<n>`` given a ``run``: two runs of one seed draw
    the same events, and only a run of its own keeps their ids apart in one store."""

    seed: int = 7
    run: str = ""
    rng: random.Random = field(init=False)
    simulations: dict[DomainName, Simulation] = field(init=False)
    counter: int = 0
    clock: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # A generator per domain, so that adding a domain leaves the others' streams as they were.
        self.simulations = {
            domain.name: domain.simulation(random.Random(f"{self.seed}-{domain.name}"))
            for domain in domains.all()
        }

    def _next_id(self, domain: DomainName) -> str:
        self.counter += 1
        run = f"{self.run}-" if self.run else ""
        return f"{domain[0]}-{self.seed}-{run}{self.counter:09d}"

    def _tick(self) -> str:
        step = timedelta(milliseconds=self.rng.randint(1, 40))
        # A burst of events must not run ahead of the wall clock: the pipeline refuses event
        # times far ahead of their arrival as a bad clock. Past the present, a millisecond each.
        ahead = max(datetime.now(UTC), self.clock + timedelta(milliseconds=1))
        self.clock = min(self.clock + step, ahead)
        return self.clock.isoformat(timespec="milliseconds")

    def draw(self, domain: DomainName) -> tuple[dict[str, Any], str]:
        """The next event of ``domain`` (a raw message's fields) and its true label, as feedback
        gives one (a sentiment, an intent, a failure mode or "none", ...)."""
        fields, truth = self.simulations[domain].draw()
        return {"id": self._next_id(domain), "ts": self._tick(), **fields}, truth


def events(
    world: World, domain: DomainName, malformed_fraction: float = 0.0
) -> Iterator[tuple[bytes, bytes]]:
    """Endless (key, value) records of the domain's raw topic."""
    while True:
        event, _ = world.draw(domain)
        key = str(event[domains.get(domain).entity]).encode()
        if world.rng.random() < malformed_fraction:
            yield key, malform(event, domain, world.rng)
        else:
            yield key, json.dumps(event).encode()


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
        broken["ts"] = "soon"
    elif kind == "empty key":
        broken[domains.get(domain).entity] = "   "
    elif kind == "oversized":
        broken["padding"] = "x" * 70_000
    else:
        broken["domain"] = "weather"
    return json.dumps(broken).encode()


def write_training_csv(domain: DomainName, path: Path, rows: int, seed: int = 11) -> Path:
    """Labeled rows of the world in the format the domain's task trains on (that of
    ../shared/data): ``text`` and the label column, or the AI4I columns."""
    world, task = World(seed=seed), domains.get(domain).task
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        text = task in TEXT_TASKS
        writer.writerow(["text", LABEL_COLUMNS[task]] if text else AI4I_COLUMNS)
        for n in range(rows):
            event, truth = world.draw(domain)
            model_input = event_input(domain, event)
            writer.writerow([model_input, truth] if text else ai4i_row(n + 1, model_input, truth))
    return path


def write_taxonomy(domain: DomainName, path: Path) -> Path | None:
    """The risk taxonomy of the world's intents of ``domain``, in the format of ../shared/data;
    None (and nothing written) for a domain without one."""
    taxonomy = domains.get(domain).simulation(random.Random(0)).taxonomy()
    if taxonomy is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(taxonomy, indent=1), "utf-8")
    return path


def event_input(domain: DomainName, event: dict[str, Any]) -> ModelInput:
    """What the worker gives the model for this event: its text, or its reading."""
    spec = domains.get(domain)
    return spec.model_input(spec.event.model_validate_json(json.dumps(event)))
