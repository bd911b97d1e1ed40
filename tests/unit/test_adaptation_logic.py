"""The pure parts of domain adaptation: trigger decisions, drift, the gate, feedback parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import AdaptationSettings, load_settings
from models.training.gate import Metrics, judge
from models.training.retraining import LabeledRow, labeled_data, split_recent
from store.readonly import sql_list, sql_string
from streams.adaptation.feedback_import import labeled_events
from streams.adaptation.messages import SENSOR_LABELS, FeedbackLabel, known_labels
from streams.adaptation.triggers import TriggerState, decide, total_variation

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def adaptation(**changes: object) -> AdaptationSettings:
    return load_settings().adaptation.model_copy(update=changes)


def state(**changes: object) -> TriggerState:
    values: dict = {
        "now": NOW,
        "labels_total": 0,
        "last_trigger_at": None,
        "labels_at_last_trigger": 0,
        "model_created_at": NOW - timedelta(hours=1),
        "drift": None,
    }
    return TriggerState(**(values | changes))


def test_count_trigger_counts_labels_since_the_last_trigger() -> None:
    settings = adaptation(min_new_labels=100, min_interval_s=60, schedule_s=0)
    assert decide(state(labels_total=99), settings) is None
    fired = decide(state(labels_total=100), settings)
    assert fired is not None and fired.reason == "count" and "100 new labels" in fired.detail
    earlier = NOW - timedelta(minutes=5)
    since_last = state(labels_total=180, last_trigger_at=earlier, labels_at_last_trigger=100)
    assert decide(since_last, settings) is None
    assert decide(state(labels_total=200, last_trigger_at=earlier, labels_at_last_trigger=100),
                  settings).reason == "count"  # fmt: skip


def test_no_trigger_within_the_minimum_interval() -> None:
    settings = adaptation(min_new_labels=10, min_interval_s=600)
    recent = state(labels_total=500, last_trigger_at=NOW - timedelta(seconds=599))
    assert decide(recent, settings) is None
    assert decide(state(labels_total=500, last_trigger_at=NOW - timedelta(seconds=600)),
                  settings) is not None  # fmt: skip


def test_drift_and_schedule_triggers() -> None:
    settings = adaptation(min_new_labels=0, drift_threshold=0.3, schedule_s=7200, min_interval_s=0)
    assert decide(state(drift=0.29), settings) is None
    assert decide(state(drift=0.31), settings).reason == "drift"
    due = state(model_created_at=NOW - timedelta(hours=2))
    assert decide(due, settings).reason == "schedule"
    assert decide(due, adaptation(min_new_labels=0, drift_threshold=0, schedule_s=0)) is None


def test_estimate_trigger_fires_when_the_estimate_falls_below_validation_by_the_margin() -> None:
    settings = adaptation(min_new_labels=0, drift_threshold=0, schedule_s=0, min_interval_s=0,
                          estimate_margin=0.05)  # fmt: skip
    assert decide(state(estimate=0.81, validation_accuracy=0.86), settings) is None
    fired = decide(state(estimate=0.80, validation_accuracy=0.86), settings)
    assert fired is not None and fired.reason == "estimate"
    assert "0.800" in fired.detail and "0.860" in fired.detail
    # No window yet, or a model without a calibration record: nothing to compare.
    assert decide(state(estimate=None, validation_accuracy=0.86), settings) is None
    assert decide(state(estimate=0.5, validation_accuracy=None), settings) is None
    assert decide(state(estimate=0.5, validation_accuracy=0.86),
                  settings.model_copy(update={"estimate_margin": 0})) is None  # fmt: skip


def test_total_variation() -> None:
    assert total_variation({"a": 5, "b": 5}, {"a": 50, "b": 50}) == pytest.approx(0)
    assert total_variation({"a": 10}, {"b": 3}) == pytest.approx(1)
    assert total_variation({"a": 3, "b": 1}, {"a": 1, "b": 1, "c": 2}) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        total_variation({}, {"a": 1})


def metrics(target: float, source: float | None) -> Metrics:
    return Metrics({"accuracy": target}, None if source is None else {"accuracy": source})


def test_gate_promotes_only_a_better_candidate_that_keeps_the_source() -> None:
    live = metrics(0.70, 0.86)
    better = judge("sentiment", live, metrics(0.80, 0.85), margin=0.01, tolerance=0.02)
    assert better.promote and better.reason.startswith("promoted")
    assert better.live == live and better.candidate.target == {"accuracy": 0.80}
    same = judge("sentiment", live, metrics(0.705, 0.86), margin=0.01, tolerance=0.02)
    assert not same.promote and "margin 0.01" in same.reason
    forgetful = judge("sentiment", live, metrics(0.90, 0.80), margin=0.01, tolerance=0.02)
    assert not forgetful.promote and "tolerance 0.02" in forgetful.reason
    unknown_source = judge("sentiment", live, metrics(0.80, None), margin=0.01, tolerance=0.02)
    assert unknown_source.promote and "source check skipped" in unknown_source.reason
    assert json.loads(json.dumps(better.to_json()))["candidate"]["source"] == {"accuracy": 0.85}


def test_recent_labels_are_held_out() -> None:
    settings = adaptation(holdout_fraction=0.2, min_holdout=20)
    assert split_recent(1000, settings) == (800, 200)
    assert split_recent(50, settings) == (30, 20)
    assert split_recent(10, settings) == (0, 20)


def test_sensor_feedback_becomes_failure_and_mode_targets() -> None:
    reading = {"machine_type": "M", "air_temp_k": 300.0, "process_temp_k": 310.0, "rpm": 1500.0,
               "torque_nm": 40.0, "tool_wear_min": 10.0}  # fmt: skip
    rows = [LabeledRow(f"e{i}", label, json.dumps(reading)) for i, label in
            enumerate(["none", "HDF", "failure"])]  # fmt: skip
    data = labeled_data("defect", rows)
    assert data.failure == [0, 1, 1] and data.modes == [(), ("HDF",), ()]
    assert data.readings[1]["torque_nm"] == 40.0


def test_feedback_labels_are_strict() -> None:
    good = {"event_id": "e1", "domain": "news", "label": "positive", "labeler": "ana",
            "ts": "2026-11-28T12:00:00"}  # fmt: skip
    assert FeedbackLabel.model_validate_json(json.dumps(good)).ts.tzinfo is not None
    for broken in ({**good, "domain": "weather"}, {**good, "event_id": ""}, {"event_id": "e1"}):
        with pytest.raises(ValueError):
            FeedbackLabel.model_validate_json(json.dumps(broken))
    assert known_labels("sentiment", []) == ("negative", "neutral", "positive")
    assert known_labels("intent_risk", ["lost_card"]) == ("lost_card",)
    assert "none" in SENSOR_LABELS and "HDF" in SENSOR_LABELS


def test_sql_literals_escape_quotes() -> None:
    assert sql_string("it's \\ fine") == "'it\\'s \\\\ fine'"
    assert sql_list(["a", "b'"]) == "('a', 'b\\'')"


def test_imported_rows_get_stable_ids_and_keys(tmp_path: Path) -> None:
    data = tmp_path / "labels.csv"
    data.write_text("text,label\n$AAPL beats estimates,positive\nMarkets flat,neutral\n"
                    "$AAPL beats estimates,positive\n")  # fmt: skip
    first = labeled_events("news", data, (), NOW)
    again = labeled_events("news", data, (), NOW + timedelta(days=1))
    assert [item.event_id for item in first] == [item.event_id for item in again]
    assert first[0].event_id == first[2].event_id != first[1].event_id
    key, value = first[0].event
    event = json.loads(value)
    assert key == b"AAPL" and event["ticker"] == "AAPL" and event["id"] == first[0].event_id
    # Without a cashtag the ticker is drawn, seeded by the event: the same on every import.
    assert [item.event[0] for item in first] == [item.event[0] for item in again]
