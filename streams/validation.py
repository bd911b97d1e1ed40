"""From a raw Kafka value to a validated event, or a one-line reason why not (pure)."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from signalyard.settings import DOMAINS, Domain
from streams.schemas import EVENT_SCHEMAS, Event

MAX_REASONS = 3


class Rejected(ValueError):
    """The message cannot be scored; ``str(error)`` is the reason recorded in the dead letter,
    ``kind`` the short class of problem that summaries count by."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def parse_event(domain: Domain, payload: bytes | None, max_bytes: int) -> Event:
    """Validate one message of the domain's raw topic, or raise Rejected with the reason."""
    if not payload:
        raise Rejected("empty", "empty message")
    if len(payload) > max_bytes:
        raise Rejected(
            "too large", f"payload of {len(payload)} bytes exceeds the limit of {max_bytes}"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise Rejected("invalid UTF-8", f"invalid UTF-8 at byte {error.start}") from None
    try:
        event = EVENT_SCHEMAS[domain].model_validate_json(text)
    except ValidationError as error:
        kind = "not JSON" if error.errors()[0]["type"] == "json_invalid" else "invalid event"
        raise Rejected(kind, describe(error)) from None
    if event.domain is not None and event.domain != domain:
        if event.domain not in DOMAINS:
            raise Rejected("wrong domain", f"unknown domain {event.domain!r}")
        raise Rejected("wrong domain", f"a {event.domain} event on the {domain} topic")
    return event  # type: ignore[return-value]


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
