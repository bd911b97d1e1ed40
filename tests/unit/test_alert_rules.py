"""Alert rules and their evaluation, without Kafka: pure functions on crafted results."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import (
    HIGH_RISK,
    SENTIMENT,
    STREAK,
    T0,
    Folder,
    reading,
    reading_stream,
    rule_book,
    sentiment_stream,
    ticket_stream,
)

import domains
from config.settings import load_settings
from domains.base import ScoredResult
from domains.sensors import SensorScore
from streams.alerting.alert import Alert
from streams.alerting.engine import EntityState
from streams.alerting.rules import (
    ConsecutiveRule,
    CountRule,
    MeanRule,
    RulesError,
    load_rules,
)


def triggers(alerts: list[Alert]) -> list[tuple[str, str, str]]:
    return [(a.rule, a.entity, a.evidence["trigger_event_id"]) for a in alerts]


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


def test_count_rule_counts_per_customer_across_clock_boundaries_window_end_excluded() -> None:
    stream = ticket_stream()
    alerts = Folder(HIGH_RISK).fold(stream)
    assert triggers(alerts) == [("risky", "c-1", "a4"), ("risky", "c-1", "a8")]
    assert alerts[0].evidence["event_ids"] == ["a1", "a3", "a4"]
    assert alerts[0].evidence["matched"] == 3
    assert alerts[0].evidence["count"] == 4  # the low-risk a2 is in the window too
    assert alerts[1].evidence["event_ids"] == ["a6", "a7", "a8"]


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
        after_restart = Folder(SENTIMENT, before_crash.log)
        assert sent + after_restart.fold(stream[committed:]) == expected
        assert after_restart.states == Folder(SENTIMENT, _log(stream)).states


@pytest.mark.parametrize("crash_at", range(13))
def test_a_crash_between_sending_and_storing_resends_the_same_alert(crash_at: int) -> None:
    """Alerts of a result are sent before its state is stored: a crash in between replays the
    result on the state before it, which fires the very same alerts (same ids) again."""
    stream = sentiment_stream()
    expected = Folder(SENTIMENT).fold(stream)
    before_crash = Folder(SENTIMENT)
    sent_before = before_crash.fold(stream[:crash_at])
    # The result at crash_at fires and its alerts are sent; the store never happens.
    resent = Folder(SENTIMENT, before_crash.log).fold(stream[crash_at : crash_at + 1])
    replayed = Folder(SENTIMENT, before_crash.log).fold(stream[crash_at:])
    assert sent_before + replayed == expected
    assert replayed[: len(resent)] == resent  # the same alerts, ids and all, once more


def _log(results: list[ScoredResult]) -> Folder.Log:
    folder = Folder(SENTIMENT)
    folder.fold(results)
    return folder.log


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
    outcome = state.fold("sensors", folder.rules, reading("late", 100, 0.99))
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
        outcome = state.fold("sensors", rules, result, T0 + timedelta(minutes=arrived_minute))
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
            outcome = states.setdefault(entity, EntityState()).fold(domain, book, result, arrival)
            alerts.extend(outcome.alerts)
        return triggers(alerts)

    timely = [(result, result.ts) for result in stream()]
    first, arrived = timely[0]
    bad_clock = first.model_copy(update={"event_id": "bad", "ts": datetime(2999, 1, 1, tzinfo=UTC)})
    assert fold(timely)  # the stream fires alerts ...
    assert fold([timely[0], (bad_clock, arrived), *timely[1:]]) == fold(timely)  # ... still
