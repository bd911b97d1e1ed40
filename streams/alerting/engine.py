"""Evaluating the rules of one domain on one entity's results: no I/O.

An entity's state is what its rules need from the past: the results within the longest window
of event time (event id, time and the fields the rules read) and when each rule last fired.
``EntityState.fold`` folds one scored result into it, in place, and returns the alerts it fires
and what changed (the result added, the results that left), which is what the alert consumer
writes to its changelog (``streams.alerting.changelog``). Each window is the span of event
time ending at the new result (``(ts - window, ts]``), so "3 high-risk tickets within an hour"
means any hour, also one across a clock boundary where a tumbling window would split the burst;
keeping the window's results is needed anyway for the evidence (their event ids).

A fold costs the same however long the windows are: each rule keeps running figures (count,
matches, the exact sum of a mean's field, the trailing streak) of its window ending at the
newest result, updated as results enter at the end and leave at the start. Only a result
older than the newest one (out of event-time order) costs a pass over the state, and so does
an alert's evidence, which lists the window's event ids. Sums are exact (integers in units of
the smallest double), so a running figure equals the one a restored state computes afresh, and
a replay fires exactly what the first pass fired.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import attrgetter
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
# A double is an integer multiple of 2**-1074; sums kept in that unit are exact.
_EXACT_SHIFT = 1074
_ts = attrgetter("ts_ms")


@dataclass(frozen=True, slots=True)
class Observation:
    event_id: str
    ts_ms: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    alerts: list[Alert]
    added: Observation | None = None  # the result as the state keeps it; None: not kept
    left: tuple[str, ...] = ()  # event ids of the results that left the state

    @property
    def changed(self) -> bool:
        """False for a replayed or too-late result: nothing to store."""
        return self.added is not None


def _exact(value: float) -> int:
    """``value`` in units of 2**-1074, exactly."""
    numerator, denominator = value.as_integer_ratio()
    return numerator * ((1 << _EXACT_SHIFT) // denominator)


@dataclass(slots=True)
class _Tally:
    """One rule's running figures over a run of results."""

    rule: Rule
    count: int = 0
    valued: int = 0  # mean: results with a value for the field
    total: int = 0  # mean: the exact sum of those values (see ``_exact``)
    matched: int = 0  # results that meet the rule's condition
    streak: int = 0  # the latest results in a row that meet it

    def enter(self, o: Observation) -> None:
        """Count ``o``, the newest of the run."""
        self.count += 1
        rule = self.rule
        if isinstance(rule, MeanRule):
            value = o.values.get(rule.field)
            if value is not None:
                self.valued += 1
                self.total += _exact(value)
        elif rule.when.holds(o.values.get(rule.when.field)):
            self.matched += 1
            self.streak += 1
        else:
            self.streak = 0

    def leave(self, o: Observation) -> None:
        """Uncount ``o``, the oldest of the run."""
        self.count -= 1
        rule = self.rule
        if isinstance(rule, MeanRule):
            value = o.values.get(rule.field)
            if value is not None:
                self.valued -= 1
                self.total -= _exact(value)
        elif rule.when.holds(o.values.get(rule.when.field)):
            self.matched -= 1
        # The streak runs from the newest result back; the oldest leaving only caps it.
        self.streak = min(self.streak, self.count)

    def fires(self) -> bool:
        rule = self.rule
        if isinstance(rule, MeanRule):
            if not self.valued:
                return False
            if rule.below is not None:
                return self.total < _exact(rule.below) * self.valued
            return self.total > _exact(rule.above) * self.valued  # type: ignore[arg-type]
        if isinstance(rule, CountRule):
            return self.matched >= rule.at_least
        if isinstance(rule, ShareRule):
            return self.matched >= rule.at_least * self.count
        return self.streak >= rule.at_least

    def figures(self) -> dict[str, Any]:
        """What the window shows, for the evidence."""
        rule = self.rule
        if isinstance(rule, MeanRule):
            mean = self.total / (self.valued << _EXACT_SHIFT) if self.valued else None
            bound = {"below": rule.below} if rule.below is not None else {"above": rule.above}
            return {"count": self.count, "mean": mean, "field": rule.field, **bound}
        figures = {"count": self.count, "condition": rule.when.text, "at_least": rule.at_least}
        if isinstance(rule, CountRule):
            return figures | {"matched": self.matched}
        if isinstance(rule, ShareRule):
            return figures | {"matched": self.matched, "share": self.matched / self.count}
        return figures | {"streak": self.streak}


def _tally(rule: Rule, run: Iterable[Observation]) -> _Tally:
    tally = _Tally(rule)
    for o in run:
        tally.enter(o)
    return tally


@dataclass(slots=True)
class _Window:
    """A rule's tally of the window ending at the newest result, from ``seen[start]`` on."""

    span_ms: int
    start: int
    tally: _Tally


@dataclass
class EntityState:
    """One entity's results within the longest window, ordered by event time (arrival order
    among equals), and when each rule last fired (rule name -> event time in ms)."""

    seen: list[Observation] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)
    watermark_ms: int | None = None  # None: nothing seen yet
    # The newest arrival (Kafka time) of a result of the entity, for forgetting it
    # (``streams.alerting.expiry``); None: not known.
    reached_ms: int | None = None
    # Running tallies, built on the first fold; a state folds with one set of rules.
    _windows: dict[str, _Window] | None = field(default=None, repr=False, compare=False)
    _ids: set[str] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._ids = {o.event_id for o in self.seen}

    def fold(
        self,
        domain: DomainName,
        rules: Sequence[Rule],
        result: ScoredResult,
        arrival: datetime | None = None,
    ) -> Outcome:
        """Fold ``result`` into this state; every rule must be of ``domain``.

        ``arrival``: when the result's record reached Kafka; an event time after it does not
        move the watermark further (None: the event time is trusted)."""
        now = _ms(result.ts)
        if arrival is not None:
            self.reached_ms = max(_ms(arrival), self.reached_ms or 0)
        if result.event_id in self._ids:
            return Outcome([])
        horizon = max(_ms_of(rule.window) for rule in rules)
        if self.watermark_ms is not None and now <= self.watermark_ms - horizon:
            return Outcome([])
        arrived = now if arrival is None else min(now, _ms(arrival))
        newest = max(arrived, self.watermark_ms if self.watermark_ms is not None else arrived)
        fields = sorted({name for rule in rules for name in rule.fields()})
        observation = Observation(result.event_id, now, {f: getattr(result, f) for f in fields})
        in_order = not self.seen or now >= self.seen[-1].ts_ms
        self.seen.insert(bisect.bisect_right(self.seen, now, key=_ts), observation)
        self._ids.add(result.event_id)
        if not in_order:
            self._windows = None  # counted afresh by the next result in order
        elif self._windows is None:
            self._rebuild(rules)
        else:
            for window in self._windows.values():
                window.tally.enter(observation)
                self._advance(window)
        left = self._drop_oldest(newest - horizon)

        entity = getattr(result, domains.get(domain).entity)
        alerts = []
        for rule in rules:
            last = self.fired.get(rule.name)
            if last is not None and arrived - last < _ms_of(rule.cooldown):
                continue
            start = now - _ms_of(rule.window)
            if self._windows is not None:
                window = self._windows[rule.name]
                tally, first = window.tally, window.start
            else:
                first = bisect.bisect_right(self.seen, start, key=_ts)
                end = bisect.bisect_right(self.seen, now, key=_ts)
                tally = _tally(rule, self.seen[first:end])
            if tally.count >= rule.min_count and tally.fires():
                self.fired[rule.name] = arrived
                run = self.seen[first : first + tally.count]
                alerts.append(_alert(domain, rule, entity, result, start, tally, run))
        # Fire times matter only while they can still silence their rule.
        cooldowns = {rule.name: _ms_of(rule.cooldown) for rule in rules}
        self.fired = {
            name: at
            for name, at in self.fired.items()
            if name in cooldowns and newest - at < cooldowns[name]
        }
        self.watermark_ms = newest
        return Outcome(alerts, added=observation, left=left)

    def _rebuild(self, rules: Sequence[Rule]) -> None:
        """Tallies of each rule's window ending at the newest result, counted afresh."""
        self._windows = {}
        for rule in rules:
            span = _ms_of(rule.window)
            end = self.seen[-1].ts_ms if self.seen else 0
            start = bisect.bisect_right(self.seen, end - span, key=_ts)
            self._windows[rule.name] = _Window(span, start, _tally(rule, self.seen[start:]))

    def _advance(self, window: _Window) -> None:
        """Move the window's start past the results that fell out of it."""
        end = self.seen[-1].ts_ms
        while self.seen[window.start].ts_ms <= end - window.span_ms:
            window.tally.leave(self.seen[window.start])
            window.start += 1

    def _drop_oldest(self, cutoff_ms: int) -> tuple[str, ...]:
        """Drop results at or before ``cutoff_ms`` and beyond ``MAX_OBSERVATIONS``; their ids."""
        drop = max(
            bisect.bisect_right(self.seen, cutoff_ms, key=_ts), len(self.seen) - MAX_OBSERVATIONS
        )
        if drop <= 0:
            return ()
        gone = self.seen[:drop]
        for window in (self._windows or {}).values():
            for o in gone[window.start :]:
                window.tally.leave(o)
            window.start = max(window.start - drop, 0)
        del self.seen[:drop]
        ids = tuple(o.event_id for o in gone)
        self._ids.difference_update(ids)
        return ids


def _evidence_ids(rule: Rule, run: Sequence[Observation], tally: _Tally) -> list[str]:
    """The results of the window that make the case: all of a mean's, the matching ones of a
    count or share, the trailing streak of a consecutive rule; the latest ones first cut."""
    if isinstance(rule, MeanRule):
        ids = [o.event_id for o in run[-MAX_EVIDENCE_IDS:]]
    elif isinstance(rule, ConsecutiveRule):
        ids = [o.event_id for o in run[len(run) - min(tally.streak, MAX_EVIDENCE_IDS) :]]
    else:
        ids = []
        for o in reversed(run):
            if len(ids) == MAX_EVIDENCE_IDS:
                break
            if rule.when.holds(o.values.get(rule.when.field)):
                ids.append(o.event_id)
        ids.reverse()
    return ids


def _alert(
    domain: DomainName,
    rule: Rule,
    entity: str,
    result: ScoredResult,
    window_start_ms: int,
    tally: _Tally,
    run: Sequence[Observation],
) -> Alert:
    evidence = {
        "kind": rule.kind,
        "trigger_event_id": result.event_id,
        "event_ids": _evidence_ids(rule, run, tally),
        "window_start": _iso(window_start_ms),
        "window_end": _iso(_ms(result.ts)),
        "min_count": rule.min_count,
        **tally.figures(),
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
