"""Evaluating the rules of one domain on one entity's results: pure, no I/O.

An entity's state is what its rules need from the past: the results within the longest window
of event time (event id, time and the fields the rules read) and when each rule last fired.
``evaluate`` folds one scored result into that state and returns the new state and the alerts
it fires. Each window is the span of event time ending at the new result (``(ts - window,
ts]``), so "3 high-risk tickets within an hour" means any hour, also one across a clock
boundary where a tumbling window would split the burst; keeping the window's results is needed
anyway for the evidence (their event ids).

Folding is idempotent: a result whose event id the state already holds changes nothing and
fires nothing, so replaying events after a crash, when the stored state may already include
them, neither counts them twice nor fires twice. A result older than the longest window before
the entity's watermark is too late to matter and is ignored the same way.

The watermark is the newest event time seen, but no result moves it past the time it arrived
(its record's Kafka timestamp, when the caller knows it): an event stamped years ahead by a
bad clock would otherwise make every correctly-timed result after it "too late", silencing the
entity for good. Such an event stays in the state, outside every window of the results that
follow, and a rule it fires cools down from its arrival, not from its stamp.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import domains
from config.settings import DomainName
from domains.base import ScoredResult
from streams.alerting.alert import Alert, alert_id
from streams.alerting.rules import ConsecutiveRule, CountRule, MeanRule, Rule, ShareRule

# Bounds the state of one entity; beyond it the oldest results leave the window early.
MAX_OBSERVATIONS = 5000
# Evidence lists at most this many event ids, the latest ones; the figures count them all.
MAX_EVIDENCE_IDS = 100


@dataclass(frozen=True, slots=True)
class Observation:
    event_id: str
    ts_ms: int
    values: dict[str, Any]


@dataclass(frozen=True)
class EntityState:
    seen: tuple[Observation, ...] = ()  # ordered by event time, arrival order among equals
    fired: dict[str, int] = field(default_factory=dict)  # rule name -> event time ms
    watermark_ms: int | None = None  # None: nothing seen yet

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": [[o.event_id, o.ts_ms, o.values] for o in self.seen],
            "fired": self.fired,
            "watermark": self.watermark_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> EntityState:
        if not data:
            return cls()
        seen = tuple(Observation(i, t, v) for i, t, v in data["seen"])
        # States written before the watermark was kept: the newest event time seen.
        watermark = data.get("watermark", seen[-1].ts_ms if seen else None)
        return cls(seen=seen, fired=dict(data["fired"]), watermark_ms=watermark)


@dataclass(frozen=True)
class Outcome:
    state: EntityState
    alerts: list[Alert]
    changed: bool  # False for a replayed or too-late result: nothing to store


@dataclass(frozen=True)
class _Finding:
    figures: dict[str, Any]  # what the window shows; part of the evidence
    event_ids: list[str]  # the results that make the case
    fires: bool


def evaluate(
    domain: DomainName,
    rules: Sequence[Rule],
    state: EntityState,
    result: ScoredResult,
    arrival: datetime | None = None,
) -> Outcome:
    """Fold ``result`` into its entity's ``state``; every rule must be of ``domain``.

    ``arrival``: when the result's record reached Kafka; an event time after it does not move
    the watermark further (None: the event time is trusted)."""
    now = _ms(result.ts)
    if any(o.event_id == result.event_id for o in state.seen):
        return Outcome(state, [], changed=False)
    horizon = max(_ms_of(rule.window) for rule in rules)
    if state.watermark_ms is not None and now <= state.watermark_ms - horizon:
        return Outcome(state, [], changed=False)
    arrived = now if arrival is None else min(now, _ms(arrival))
    newest = max(arrived, state.watermark_ms if state.watermark_ms is not None else arrived)

    fields = sorted({name for rule in rules for name in rule.fields()})
    observation = Observation(result.event_id, now, {f: getattr(result, f) for f in fields})
    seen = list(state.seen)
    seen.insert(bisect.bisect_right([o.ts_ms for o in seen], now), observation)
    seen = [o for o in seen if o.ts_ms > newest - horizon][-MAX_OBSERVATIONS:]

    entity = getattr(result, domains.get(domain).entity)
    fired = dict(state.fired)
    alerts = []
    for rule in rules:
        start = now - _ms_of(rule.window)
        window = [o for o in seen if start < o.ts_ms <= now]
        finding = _assess(rule, window)
        last = fired.get(rule.name)
        cooling = last is not None and arrived - last < _ms_of(rule.cooldown)
        if finding.fires and len(window) >= rule.min_count and not cooling:
            fired[rule.name] = arrived
            alerts.append(_alert(domain, rule, entity, result, start, finding))
    # Fire times matter only while they can still silence their rule.
    cooldowns = {rule.name: _ms_of(rule.cooldown) for rule in rules}
    fired = {
        name: at
        for name, at in fired.items()
        if name in cooldowns and newest - at < cooldowns[name]
    }
    return Outcome(EntityState(tuple(seen), fired, newest), alerts, changed=True)


def _assess(rule: Rule, window: list[Observation]) -> _Finding:
    count = len(window)
    if isinstance(rule, MeanRule):
        values = [o.values[rule.field] for o in window if o.values.get(rule.field) is not None]
        mean = sum(values) / len(values) if values else None
        fires = mean is not None and (
            mean < rule.below if rule.below is not None else mean > rule.above  # type: ignore[operator]
        )
        figures = {"count": count, "mean": mean, "field": rule.field}
        figures |= {"below": rule.below} if rule.below is not None else {"above": rule.above}
        return _Finding(figures, [o.event_id for o in window], fires)
    matching = [o for o in window if rule.when.holds(o.values.get(rule.when.field))]
    figures = {"count": count, "condition": rule.when.text, "at_least": rule.at_least}
    if isinstance(rule, CountRule):
        figures["matched"] = len(matching)
        return _Finding(figures, [o.event_id for o in matching], len(matching) >= rule.at_least)
    if isinstance(rule, ShareRule):
        share = len(matching) / count
        figures |= {"matched": len(matching), "share": share}
        return _Finding(figures, [o.event_id for o in matching], share >= rule.at_least)
    assert isinstance(rule, ConsecutiveRule)
    streak: list[str] = []
    for o in reversed(window):
        if not rule.when.holds(o.values.get(rule.when.field)):
            break
        streak.insert(0, o.event_id)
    figures["streak"] = len(streak)
    return _Finding(figures, streak, len(streak) >= rule.at_least)


def _alert(
    domain: DomainName,
    rule: Rule,
    entity: str,
    result: ScoredResult,
    window_start_ms: int,
    finding: _Finding,
) -> Alert:
    evidence = {
        "kind": rule.kind,
        "trigger_event_id": result.event_id,
        "event_ids": finding.event_ids[-MAX_EVIDENCE_IDS:],
        "window_start": _iso(window_start_ms),
        "window_end": _iso(_ms(result.ts)),
        "min_count": rule.min_count,
        **finding.figures,
    }
    return Alert(
        alert_id=alert_id(domain, rule.name, entity, result.event_id),
        ts=_utc(result.ts),
        domain=domain,
        entity=entity,
        rule=rule.name,
        severity=rule.severity,
        evidence=evidence,
        model_version=result.model_version,
    )


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _ms(ts: datetime) -> int:
    return round(_utc(ts).timestamp() * 1000)


def _ms_of(span: timedelta) -> int:
    return round(span.total_seconds() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
