"""From a raw Kafka value to a validated event, or a one-line reason why not (pure).

Beyond the schema, two faults found in the field are refused here:

* a JSON object that repeats a key, at any depth (``{"customer_id": "c-1", ...,
  "customer_id": "c-2"}``): parsers disagree on which copy wins (first, last, error), so the
  producer may have keyed and routed the record by one value while we would score the other;
* an event time that cannot be right: further ahead of the record's arrival (its Kafka
  timestamp) than ``max_future_skew``, further behind it than ``max_age``, or outside what
  the store's ``DateTime64(3)`` columns hold. One machine stamping the year 2999 would
  otherwise sit at the end of every window of its entity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import jiter
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

import domains
from config.settings import DomainName, PipelineSettings
from domains.base import RawEvent

MAX_REASONS = 3
# The range of ClickHouse's DateTime64(3) (the store's time columns).
STORE_TIME_RANGE = (
    datetime(1900, 1, 1, tzinfo=UTC),
    datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC),
)


@dataclass(frozen=True)
class EventLimits:
    """What a raw event may be: at most ``max_payload_bytes`` long, with an event time at most
    ``max_future_skew`` after and ``max_age`` before its record's Kafka timestamp."""

    max_payload_bytes: int
    max_future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)

    @classmethod
    def of(cls, pipeline: PipelineSettings) -> EventLimits:
        return cls(
            pipeline.max_payload_bytes,
            timedelta(seconds=pipeline.max_future_skew_s),
            timedelta(seconds=pipeline.max_event_age_s),
        )


class Rejected(ValueError):
    """The message cannot be scored; ``str(error)`` is the reason recorded in the dead letter,
    ``kind`` the short class of problem that summaries count by."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def parse_event(
    domain: DomainName, payload: bytes | None, limits: EventLimits, arrival: datetime | None = None
) -> RawEvent:
    """Validate one message of the domain's raw topic, or raise Rejected with the reason.

    ``arrival``: the record's Kafka timestamp, which the event time is bounded against; None
    (a record without one) checks the event time against the store's range only."""
    if not payload:
        raise Rejected("empty", "empty message")
    if len(payload) > limits.max_payload_bytes:
        raise Rejected(
            "too large",
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}",
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected("invalid UTF-8", f"invalid UTF-8 at byte {error.start}") from None
    try:
        event = domains.get(domain).event.model_validate_json(text)
    except ValidationError as error:
        kind = "not JSON" if error.errors()[0]["type"] == "json_invalid" else "invalid event"
        raise Rejected(kind, describe(error)) from None
    reject_repeated_keys(payload)
    check_domain_and_time(event, domain, limits, arrival)
    return event  # type: ignore[return-value]


def parse_events(
    domain: DomainName,
    payloads: Sequence[bytes | None],
    limits: EventLimits,
    arrivals: Sequence[datetime | None],
) -> list[RawEvent | Rejected]:
    """What ``parse_event`` makes of each payload, in order: its event, or the Rejected it
    raises with its reason.

    When every payload is one well-formed JSON value within the size limit that repeats no
    key (the usual fetch), the schema is validated for all of them in one call; a batch with
    any fault is validated payload by payload, so each bad one gets exactly its own reason."""
    together = _validated_together(domain, payloads, limits)
    if together is None:
        return [_outcome(domain, p, limits, a) for p, a in zip(payloads, arrivals, strict=True)]
    outcomes: list[RawEvent | Rejected] = []
    for event, arrival in zip(together, arrivals, strict=True):
        try:
            check_domain_and_time(event, domain, limits, arrival)
        except Rejected as rejected:
            outcomes.append(rejected)
        else:
            outcomes.append(event)
    return outcomes


def _outcome(
    domain: DomainName, payload: bytes | None, limits: EventLimits, arrival: datetime | None
) -> RawEvent | Rejected:
    try:
        return parse_event(domain, payload, limits, arrival)
    except Rejected as rejected:
        return rejected


def _validated_together(
    domain: DomainName, payloads: Sequence[bytes | None], limits: EventLimits
) -> list[RawEvent] | None:
    """The events of ``payloads`` validated in one call, or None when any payload has a fault.
    Each payload is first parsed alone (the repeated-key check): only then does joining them
    into one JSON array give one element per payload, whatever a payload holds."""
    whole: list[bytes] = []
    for payload in payloads:
        if not payload or len(payload) > limits.max_payload_bytes:
            return None
        try:
            reject_repeated_keys(payload)
        except Rejected:
            return None
        whole.append(payload)
    try:
        return _event_list(domain).validate_json(b"[" + b",".join(whole) + b"]")
    except ValidationError:
        return None


@cache
def _event_list(domain: DomainName) -> TypeAdapter[list[RawEvent]]:
    return TypeAdapter(list[domains.get(domain).event])


def check_domain_and_time(
    event: RawEvent, domain: DomainName, limits: EventLimits, arrival: datetime | None
) -> None:
    """Raise Rejected when a valid event belongs to another domain or at another time."""
    if event.domain is not None and event.domain != domain:
        if event.domain not in domains.names():
            raise Rejected("wrong domain", f"unknown domain {event.domain!r}")
        raise Rejected("wrong domain", f"a {event.domain} event on the {domain} topic")
    check_event_time(event.ts, limits, arrival)


DUPLICATE = "Detected duplicate key "  # how jiter's error starts; the key follows, quoted


def reject_repeated_keys(payload: bytes) -> None:
    """Raise Rejected when a JSON object in ``payload`` (valid JSON) repeats a key."""
    try:
        jiter.from_json(payload, catch_duplicate_keys=True, cache_mode="none")
    except ValueError as error:
        message = str(error)
        if not message.startswith(DUPLICATE):
            raise Rejected("not JSON", f"not JSON: {message}") from None
        key = message.removeprefix(DUPLICATE).rpartition(" at line ")[0]
        raise Rejected("repeated key", f"key {key} appears more than once in an object") from None


def check_event_time(ts: datetime, limits: EventLimits, arrival: datetime | None) -> None:
    """Raise Rejected when ``ts`` is out of the bounds of ``limits`` around ``arrival``, or
    out of the store's range."""
    low, high = STORE_TIME_RANGE
    if not low <= ts <= high:
        raise Rejected(
            "bad event time",
            f"ts {ts.isoformat()} is outside what the store holds ({low.date()} to {high.date()})",
        )
    if arrival is None:
        return
    if ts - arrival > limits.max_future_skew:
        raise Rejected(
            "bad event time",
            f"ts {ts.isoformat()} is {_span(ts - arrival)} ahead of the record's Kafka timestamp "
            f"{arrival.isoformat()} (allowed: {_span(limits.max_future_skew)}, "
            "pipeline.max_future_skew_s)",
        )
    if arrival - ts > limits.max_age:
        raise Rejected(
            "bad event time",
            f"ts {ts.isoformat()} is {_span(arrival - ts)} before the record's Kafka timestamp "
            f"{arrival.isoformat()} (allowed: {_span(limits.max_age)}, pipeline.max_event_age_s)",
        )


def _span(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 2 * 86_400:
        return f"{seconds / 86_400:,.0f} days"
    return f"{seconds:,.0f} s"


def describe(error: ValidationError) -> str:
    """The first few problems of a validation error, one line."""
    problems = [_problem(detail) for detail in error.errors()[:MAX_REASONS]]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (+{more} more)" if more > 0 else "")


def _problem(detail: ErrorDetails) -> str:
    if detail["type"] == "json_invalid":
        return f"not JSON: {detail['msg'].removeprefix('Invalid JSON: ')}"
    if detail["type"] == "model_type":
        return "not a JSON object"
    where = ".".join(str(part) for part in detail["loc"])
    if detail["type"] == "missing":
        return f"missing field {where}"
    message = detail["msg"].removeprefix("Value error, ")
    return f"field {where}: {message}" if where else message
