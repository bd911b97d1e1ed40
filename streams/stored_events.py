"""Scored events read back from the store: what the model saw and what it said.

    await find_events(store, wanted, wait_s, until=None) -> Lookup   # until found or ``until``
    stored_event(domain, row) -> StoredEvent   # a row of ``queries.stored_events``
    event_input(domain, row) -> ModelInput     # a row of it or of ``queries.unlabeled_events``

The event's model input is rebuilt by parsing the stored row back into the event schema and
applying the same function the scoring agent applied (``streams.results.model_input``), so a
text is exactly the one the model read. Used by feedback (labels joined to their events),
alert explanations, ``signalyard explain --event-id`` and the trainer (unlabeled events for a
teacher to label).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

import domains
from config.settings import DomainName
from models.base import ModelInput
from store import queries
from store.readonly import QueryError, ReadOnlyStore
from streams.validation import describe

log = logging.getLogger(__name__)

LOOKUP_INTERVAL_S = 0.5  # between lookups of events not in the store yet


@dataclass(frozen=True)
class StoredEvent:
    input: str  # the text, or the sensor reading as JSON
    model_input: ModelInput  # the text, or the reading, as the model takes it
    event_ts: str
    predicted_label: str
    model_version: str


@dataclass(frozen=True)
class Lookup:
    """What ``find_events`` found, by (domain, event id)."""

    found: dict[tuple[DomainName, str], StoredEvent]
    invalid: dict[tuple[DomainName, str], str]  # stored rows that no longer parse, and why
    # By domain: the query error of the last attempt, for domains with events still missing.
    errors: dict[DomainName, QueryError]


async def find_events(
    store: ReadOnlyStore,
    wanted: Iterable[tuple[DomainName, str]],
    wait_s: float,
    until: asyncio.Event | None = None,
) -> Lookup:
    """Look the wanted (domain, event id) pairs up in ``store``, one query per domain, and
    again every ``LOOKUP_INTERVAL_S`` for those still missing until ``wait_s`` seconds have
    passed (the last attempt may start up to ``LOOKUP_INTERVAL_S`` after that): a label or an
    alert can name an event whose rows the sink has not written yet. A row that no longer
    parses as its event schema is ``invalid`` and not looked up again. A query error (busy,
    over a ``[queries]`` limit) is logged and tried again; the last attempt's are returned in
    ``errors``, not raised. ``until``, once set, ends the wait early."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    until = until or asyncio.Event()
    missing = set(wanted)
    found: dict[tuple[DomainName, str], StoredEvent] = {}
    invalid: dict[tuple[DomainName, str], str] = {}
    errors: dict[DomainName, QueryError] = {}
    while missing:
        errors = {}
        for domain in sorted({domain for domain, _ in missing}):
            ids = sorted(event_id for d, event_id in missing if d == domain)
            try:
                result = await store.query(queries.stored_events(domain, ids))
            except QueryError as error:
                log.warning("looking up %d stored %s events: %s", len(ids), domain, error)
                # Kept without its frames, which would hold this call's locals (the
                # store's client among them) in a reference cycle until a collection.
                errors[domain] = error.with_traceback(None)
                continue
            for values in result.rows:
                row = dict(zip(result.columns, values, strict=True))
                try:
                    found[(domain, row["id"])] = stored_event(domain, row)
                except ValidationError as error:
                    reason = f"the stored event is invalid: {describe(error)}"
                    invalid[(domain, row["id"])] = reason
        missing -= found.keys() | invalid.keys()
        if not missing or loop.time() >= deadline or until.is_set():
            break
        with contextlib.suppress(TimeoutError):  # the interval passed, ``until`` still unset
            await asyncio.wait_for(until.wait(), LOOKUP_INTERVAL_S)
        if until.is_set():
            break
    return Lookup(found, invalid, errors)


def event_input(domain: DomainName, row: Mapping[str, Any]) -> ModelInput:
    """The model input of a stored event row (``Domain.stored_fields`` columns, others ignored)."""
    event = domains.get(domain).event.model_validate(
        {key: value for key, value in row.items() if value is not None}, strict=False
    )
    return domains.get(domain).model_input(event)  # type: ignore[arg-type]


def stored_event(domain: DomainName, row: Mapping[str, Any]) -> StoredEvent:
    """The joined row of ``queries.stored_events`` as the model's input and its prediction."""
    value = event_input(domain, row)
    return StoredEvent(
        input=value if isinstance(value, str) else json.dumps(value, sort_keys=True),
        model_input=value,
        event_ts=row["ts"],
        predicted_label=row["predicted"],
        model_version=row["model_version"],
    )
