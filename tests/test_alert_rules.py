"""Alert rules and their evaluation, without Kafka: pure functions on crafted results."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import domains
from config.settings import load_settings
from domains.base import ScoredResult
from domains.news import NewsScore
from domains.sensors import SensorScore
from domains.tickets import TicketScore
from streams.alerting.alert import Alert
from streams.alerting.engine import EntityState, evaluate
from streams.alerting.rules import (
    ConsecutiveRule,
    CountRule,
    MeanRule,
    RuleBook,
    RulesError,
    load_rules,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _common(event_id: str, minute: float) -> dict:
    return {
        "event_id": event_id,
        "ts": T0 + timedelta(minutes=minute),
        "model_name": "m",
        "model_version": "v7",
        "batch_size": 1,
        "latency_ms": 1.0,
        "scored_at": T0,
    }


def news(event_id: str, minute: float, sentiment: float) -> NewsScore:
    return NewsScore(
        **_common(event_id, minute),
        ticker="ACME",
        label="negative" if sentiment < 0 else "positive",
        p_negative=0.5,
        p_neutral=0.0,
        p_positive=0.5,
        sentiment=sentiment,
    )


def ticket(event_id: str, minute: float, risk: str, customer: str = "c-1") -> TicketScore:
    return TicketScore(
        **_common(event_id, minute),
        customer_id=customer,
        intent="x",
        top_intents=["x"],
        top_probabilities=[1.0],
        risk_score=0.9 if risk == "high" else 0.1,
        risk_level=risk,
    )


def reading(event_id: str, minute: float, probability: float, machine: str = "M-1") -> SensorScore:
    return SensorScore(
        **_common(event_id, minute),
        machine_id=machine,
        failure_probability=probability,
        failure_mode="none",
        defect=probability > 0.5,
    )


def rule_book(text: str) -> RuleBook:
    return RuleBook.model_validate(tomllib.loads(text))


SENTIMENT = """
[[rules]]
name = "drop"
domain = "news"
kind = "mean"
field = "sentiment"
below = -0.4
window = "15m"
min_count = 5
severity = "warning"
cooldown = "30m"
"""
HIGH_RISK = """
[[rules]]
name = "risky"
domain = "tickets"
kind = "count"
when = { field = "risk_level", equals = "high" }
at_least = 3
window = "1h"
severity = "critical"
cooldown = "1h"
"""
STREAK = """
[[rules]]
name = "streak"
domain = "sensors"
kind = "consecutive"
when = { field = "failure_probability", above = 0.8 }
at_least = 2
window = "1h"
severity = "critical"
cooldown = "30m"

[[rules]]
name = "failure-rate"
domain = "sensors"
kind = "share"
when = { field = "defect", equals = true }
at_least = 0.5
window = "10m"
min_count = 4
severity = "warning"
cooldown = "1h"
"""


class Folder:
    """Folds results one by one, keeping each entity's state as a table would (JSON)."""

    def __init__(self, text: str, states: dict[str, EntityState] | None = None) -> None:
        self.rules = rule_book(text).rules
        self.domain = self.rules[0].domain
        self.states = dict(states or {})

    def fold(self, results: list[ScoredResult]) -> list[Alert]:
        alerts = []
        for result in results:
            entity = getattr(result, domains.get(self.domain).entity)
            state = self.states.get(entity, EntityState())
            outcome = evaluate(self.domain, self.rules, state, result)
            if outcome.changed:
                self.states[entity] = EntityState.from_json(outcome.state.to_json())
            else:
                assert outcome.state == state and not outcome.alerts
            alerts.extend(outcome.alerts)
        return alerts


def triggers(alerts: list[Alert]) -> list[tuple[str, str, str]]:
    return [(a.rule, a.entity, a.evidence["trigger_event_id"]) for a in alerts]


def sentiment_stream() -> list[NewsScore]:
    return [
        *(news(f"n{i}", minute, -0.6) for i, minute in enumerate([0, 2, 4, 6])),
        news("n4", 8, 0.5),  # five articles, mean -0.38: not below -0.4
        news("n5", 9, -0.6),  # six, mean -0.417: fires
        news("n6", 10, -0.9),  # still below, but cooling down
        *(news(f"n{7 + i}", 40 + i, -0.9) for i in range(5)),  # n11 at 44: 35 min later
    ]


def test_mean_rule_needs_min_count_in_the_window_and_respects_the_cooldown() -> None:
    alerts = Folder(SENTIMENT).fold(sentiment_stream())
    assert triggers(alerts) == [("drop", "ACME", "n5"), ("drop", "ACME", "n11")]
    first = alerts[0]
    assert first.evidence["event_ids"] == [f"n{i}" for i in range(6)]
    assert first.evidence["count"] == 6
    assert first.evidence["mean"] == pytest.approx(-2.5 / 6)
    assert first.evidence["window_start"] == "2026-03-02T08:54:00Z"
    assert first.evidence["window_end"] == "2026-03-02T09:09:00Z"
    assert (first.severity, first.model_version, first.domain) == ("warning", "v7", "news")
    assert first.ts == T0 + timedelta(minutes=9)
    # n7..n11 only: the first burst left the 15-minute window long ago.
    assert alerts[1].evidence["event_ids"] == [f"n{i}" for i in range(7, 12)]


def ticket_stream() -> list[TicketScore]:
    return [
        ticket("a1", 50, "high"),
        ticket("b1", 0, "high", "c-2"),
        ticket("a2", 55, "low"),
        ticket("b2", 60, "high", "c-2"),  # b1 is exactly one hour older: outside the window
        ticket("a3", 65, "high"),
        ticket("b3", 70, "high", "c-2"),  # only b2, b3 within the hour
        ticket("a4", 109, "high"),  # a1, a3, a4 within (09:49, 10:49]: fires
        ticket("a5", 110, "high"),  # cooling
        ticket("a6", 120, "high"),
        ticket("a7", 165, "high"),  # four in the hour, still cooling (56 min)
        ticket("a8", 170, "high"),  # 61 min after a4: a6, a7, a8 -> fires again
    ]


def test_count_rule_counts_per_customer_across_clock_boundaries_window_end_excluded() -> None:
    stream = ticket_stream()
    alerts = Folder(HIGH_RISK).fold(stream)
    assert triggers(alerts) == [("risky", "c-1", "a4"), ("risky", "c-1", "a8")]
    assert alerts[0].evidence["event_ids"] == ["a1", "a3", "a4"]
    assert alerts[0].evidence["matched"] == 3
    assert alerts[0].evidence["count"] == 4  # the low-risk a2 is in the window too
    assert alerts[1].evidence["event_ids"] == ["a6", "a7", "a8"]


def reading_stream() -> list[SensorScore]:
    return [
        reading("r0", 0, 0.9),
        reading("r1", 1, 0.3),  # breaks the streak
        reading("r2", 2, 0.85),
        reading("r3", 3, 0.95),  # two in a row: streak fires; defects 3 of 4: rate fires
        reading("r4", 4, 0.99),  # both cooling
    ]


def test_consecutive_and_share_rules_on_one_machine() -> None:
    stream = reading_stream()
    alerts = Folder(STREAK).fold(stream)
    assert triggers(alerts) == [("streak", "M-1", "r3"), ("failure-rate", "M-1", "r3")]
    streak, rate = alerts
    assert streak.evidence["event_ids"] == ["r2", "r3"] and streak.evidence["streak"] == 2
    assert streak.evidence["condition"] == "failure_probability > 0.8"
    assert rate.evidence["share"] == 0.75 and rate.evidence["event_ids"] == ["r0", "r2", "r3"]
    assert streak.alert_id != rate.alert_id


def test_a_late_reading_is_placed_in_event_time_order() -> None:
    stream = [reading("r0", 0, 0.9), reading("r2", 2, 0.1), reading("r1", 1, 0.95)]
    # r1 arrives last but sits between r0 and r2: within (.., 1] the streak is r0, r1.
    alerts = Folder(STREAK).fold(stream)
    assert [a.evidence["event_ids"] for a in alerts if a.rule == "streak"] == [["r0", "r1"]]


@pytest.mark.parametrize("crash_after", range(13))
def test_replaying_after_a_crash_fires_the_same_alerts_and_no_others(crash_after: int) -> None:
    """The stored state may be ahead of the committed offsets by any number of results: the
    replay fires exactly the alerts not yet sent, with the ids they had."""
    stream = sentiment_stream()
    expected = Folder(SENTIMENT).fold(stream)
    for committed in range(crash_after + 1):
        before_crash = Folder(SENTIMENT)
        sent = before_crash.fold(stream[:crash_after])
        after_restart = Folder(SENTIMENT, before_crash.states)
        assert sent + after_restart.fold(stream[committed:]) == expected
        assert after_restart.states == Folder(SENTIMENT, _states(stream)).states


@pytest.mark.parametrize("crash_at", range(13))
def test_a_crash_between_sending_and_storing_resends_the_same_alert(crash_at: int) -> None:
    """Alerts of a result are sent before its state is stored: a crash in between replays the
    result on the state before it, which fires the very same alerts (same ids) again."""
    stream = sentiment_stream()
    expected = Folder(SENTIMENT).fold(stream)
    before_crash = Folder(SENTIMENT)
    sent_before = before_crash.fold(stream[:crash_at])
    # The result at crash_at fires and its alerts are sent; the store never happens.
    resent = Folder(SENTIMENT, before_crash.states).fold(stream[crash_at : crash_at + 1])
    replayed = Folder(SENTIMENT, before_crash.states).fold(stream[crash_at:])
    assert sent_before + replayed == expected
    assert replayed[: len(resent)] == resent  # the same alerts, ids and all, once more


def _states(results: list[ScoredResult]) -> dict[str, EntityState]:
    folder = Folder(SENTIMENT)
    folder.fold(results)
    return folder.states


def test_alert_ids_are_deterministic_and_distinct() -> None:
    first = Folder(SENTIMENT).fold(sentiment_stream())
    again = Folder(SENTIMENT).fold(sentiment_stream())
    assert [a.alert_id for a in first] == [a.alert_id for a in again]
    assert len({a.alert_id for a in first}) == len(first)
    assert first == again


def test_state_keeps_only_the_longest_window_and_live_cooldowns() -> None:
    folder = Folder(STREAK)
    folder.fold([reading(f"r{i}", i * 10, 0.95) for i in range(20)])  # 0..190 minutes
    state = folder.states["M-1"]
    assert [o.event_id for o in state.seen] == [f"r{i}" for i in range(14, 20)]  # (130, 190]
    assert set(state.seen[0].values) == {"failure_probability", "defect"}
    last_fire = round((T0 + timedelta(minutes=190)).timestamp() * 1000)
    assert state.fired == {"streak": last_fire}  # failure-rate: never 4 readings in 10 min
    folder.fold([reading("r20", 200, 0.1), reading("r21", 225, 0.1)])
    assert folder.states["M-1"].fired == {}  # 35 minutes on, the cool-down is over
    # A result older than the longest window before the newest is too late to count.
    outcome = evaluate("sensors", folder.rules, state, reading("late", 100, 0.99))
    assert not outcome.changed and not outcome.alerts


def test_the_shipped_rules_file_holds_the_documented_examples() -> None:
    rules = {rule.name: rule for rule in load_rules(load_settings().rules_path).rules}
    drop = rules["ticker-sentiment-drop"]
    assert isinstance(drop, MeanRule)
    assert (drop.below, drop.window, drop.min_count) == (-0.4, timedelta(minutes=15), 5)
    risky = rules["customer-high-risk-tickets"]
    assert isinstance(risky, CountRule)
    assert (risky.when.equals, risky.at_least, risky.window) == ("high", 3, timedelta(hours=1))
    streak = rules["machine-defect-streak"]
    assert isinstance(streak, ConsecutiveRule)
    assert (streak.when.field, streak.when.above, streak.at_least) == (
        "failure_probability",
        0.8,
        2,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('field = "sentiment"', 'field = "sentimant"'), "news results have no field 'sentimant'"),
        (('window = "15m"', 'window = "15 minutes"'), "rules.0.window"),
        (("below = -0.4", "below = -0.4\nabove = 0.4"), "exactly one of above, below"),
        (('severity = "warning"', 'severity = "loud"'), "rules.0.severity"),
        (('kind = "mean"', 'kind = "median"'), "rules.0"),
        (('field = "sentiment"', 'field = "label"'), "field 'label' is not a number"),
    ],
)
def test_invalid_rules_are_refused_in_one_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(SENTIMENT.replace(*change))
    with pytest.raises(RulesError) as error:
        load_rules(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_condition_types_and_duplicates_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(STREAK.replace("equals = true", 'equals = "yes"'))
    with pytest.raises(RulesError, match="field 'defect' is not a str"):
        load_rules(path)
    path.write_text(HIGH_RISK + HIGH_RISK)
    with pytest.raises(RulesError, match="rule names must be unique: risky"):
        load_rules(path)
    with pytest.raises(RulesError, match="not found"):
        load_rules(tmp_path / "absent.toml")


def test_an_event_stamped_in_the_far_future_does_not_silence_its_entity() -> None:
    rules = rule_book(STREAK).rules
    state = EntityState()

    def fold(result: SensorScore, arrived_minute: float) -> list[Alert]:
        nonlocal state
        outcome = evaluate("sensors", rules, state, result, T0 + timedelta(minutes=arrived_minute))
        state = EntityState.from_json(outcome.state.to_json())
        return outcome.alerts

    assert fold(reading("r0", 0, 0.1), 0) == []
    # A bad clock: stamped some 973 years ahead, arriving at minute 1.
    far = reading("bad", 0, 0.99).model_copy(update={"ts": datetime(2999, 1, 1, tzinfo=UTC)})
    assert fold(far, 1) == []
    assert fold(reading("r1", 2, 0.95), 2) == []
    fired = fold(reading("r2", 3, 0.97), 3)
    assert triggers(fired) == [("streak", "M-1", "r2")]
    assert fired[0].evidence["event_ids"] == ["r1", "r2"]  # the far event is in no window
    # Time goes on: past the 30-minute cool-down the streak fires again.
    assert triggers(fold(reading("r3", 40, 0.9), 40)) == [("streak", "M-1", "r3")]
    assert state.watermark_ms == round((T0 + timedelta(minutes=40)).timestamp() * 1000)


def test_without_arrival_times_the_event_time_is_trusted() -> None:
    folder = Folder(STREAK)
    folder.fold([reading("r0", 0, 0.9), reading("r1", 180, 0.9)])
    assert folder.fold([reading("late", 1, 0.9)]) == []  # three hours behind: too late


@pytest.mark.parametrize(
    ("rules", "stream"),
    [(SENTIMENT, sentiment_stream), (HIGH_RISK, ticket_stream), (STREAK, reading_stream)],
)
def test_in_every_domain_a_far_future_event_changes_no_alert(
    rules: str, stream: Callable[[], list[ScoredResult]]
) -> None:
    def fold(results: list[tuple[ScoredResult, datetime]]) -> list[tuple[str, str, str]]:
        book, states, alerts = rule_book(rules).rules, {}, []
        domain = book[0].domain
        for result, arrival in results:
            entity = getattr(result, domains.get(domain).entity)
            outcome = evaluate(domain, book, states.get(entity, EntityState()), result, arrival)
            states[entity] = outcome.state
            alerts.extend(outcome.alerts)
        return triggers(alerts)

    timely = [(result, result.ts) for result in stream()]
    first, arrived = timely[0]
    bad_clock = first.model_copy(update={"event_id": "bad", "ts": datetime(2999, 1, 1, tzinfo=UTC)})
    assert fold(timely)  # the stream fires alerts ...
    assert fold([timely[0], (bad_clock, arrived), *timely[1:]]) == fold(timely)  # ... still
