"""Attributions of tiny models on crafted inputs: the input that alone decides the label
ranks first, sub-word pieces come back as words, and the completeness gap is reported."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import isolated_settings, query
from helpers import create_tables_in, write_events

import domains
from domains.base import Lineage
from domains.news import NewsEvent
from models.registry import Registry
from models.sensor_model import load_sensor_model
from models.serving.explanations import explain_readings, explain_texts
from models.serving.loading import load_scorer
from models.text_model import load_text_classifier
from models.training.trainer import TrainOptions, train_model
from signalyard.cli import main
from store.readonly import ReadOnlyStore
from store.sink import ClickHouseSink
from streams.alerting.alert import Alert, alert_id
from streams.explaining import EventExplainer
from streams.stored_events import Lookup, find_events

ORIGIN = Lineage("news.raw", 0, 0, "at_least_once")


def test_the_deciding_word_ranks_first(keyword_model: Path) -> None:
    model, tokenizer, labels = load_text_classifier(keyword_model)
    texts = ["its report on monday shows skyrocketing news", "bankruptcy the company said"]
    first, second = explain_texts(model, tokenizer, labels, texts, steps=48)
    assert first.label == "positive" and second.label == "negative"
    assert first.top(1)[0][0].feature == "skyrocketing"
    assert second.top(1)[0][0].feature == "bankruptcy"
    # Sub-word pieces merge back into the words of the text, in order.
    assert [a.feature for a in first.attributions] == texts[0].split()
    assert abs(first.delta) < 0.05 and first.steps == 48
    assert first.short(1).startswith("+skyrocketing")


def test_explaining_toward_another_label(keyword_model: Path) -> None:
    model, tokenizer, labels = load_text_classifier(keyword_model)
    (toward_negative,) = explain_texts(
        model, tokenizer, labels, ["skyrocketing report"], target="negative", steps=32
    )
    assert toward_negative.label == "negative" and toward_negative.probability < 0.5
    # The positive keyword is what keeps the text from being negative.
    assert toward_negative.top(1)[1][0].feature == "skyrocketing"
    with pytest.raises(ValueError, match="unknown label 'bullish'"):
        explain_texts(model, tokenizer, labels, ["x"], target="bullish")


def test_sensor_attributions_are_exact_shapley_in_column_units(
    tmp_path: Path, sensors_csv: Path
) -> None:
    registry = Registry(tmp_path)
    train_model("sensors", "defect", sensors_csv, registry, TrainOptions(epochs=40))
    model = load_sensor_model(registry.version_dir("sensors", "v1"))
    reading = {"machine_type": "M", "air_temp_k": 300.0, "process_temp_k": 310.0,
               "rpm": 1500.0, "torque_nm": 69.0, "tool_wear_min": 100.0}  # fmt: skip
    (explained,) = explain_readings(model, [reading])
    assert explained.method == "shapley" and explained.probability > 0.5
    toward, _ = explained.top(1)
    assert toward[0].feature == "torque_nm" and toward[0].unit == "Nm" and toward[0].value == 69
    assert toward[0].reference == pytest.approx(model.reference["torque_nm"])
    assert abs(explained.delta) < 1e-5  # exact Shapley values are complete (float32 sums)
    assert "torque_nm=69Nm" in explained.short(1)


def test_an_alert_carries_its_explanation_once_after_a_replay_too(
    tmp_path: Path, keyword_model: Path
) -> None:
    """The real embedded store and sink: the triggering event's text is read back, explained
    with the version that scored it, stored once, and put in the evidence; evaluating the
    same alert again (a replay) gives the same evidence and no second row. While explaining
    has had its share of the time, an alert waits for nothing."""
    settings = isolated_settings(
        tmp_path / "home",
        registry_dir=keyword_model.parent.parent.parent,
        explanations={
            "steps": 16,
            "top_k": 2,
            "in_alerts": True,
            "lookup_wait_s": 0.3,
            # The explainer process runs at the lowest priority: on a busy machine its start
            # (imports, model load) takes a while.
            "budget_s": 120,
            "max_cpu_share": 1,
        },
    )
    scorer = load_scorer(keyword_model, "cpu", 32)
    event = NewsEvent(id="e-1", ts=datetime.now(UTC), source="wire", ticker="ACME",
                      headline="bankruptcy the company said")  # fmt: skip
    now = datetime.now(UTC)
    (prediction,) = scorer.score([domains.get("news").model_input(event)])
    result = domains.get("news").scored_result(event, prediction, scorer, 1, now, now, ORIGIN)

    def alert(event_id: str) -> Alert:
        evidence = {"kind": "count", "trigger_event_id": event_id, "event_ids": [event_id]}
        return Alert(alert_id=alert_id("news", "r", "ACME", event_id), ts=now, domain="news",
                     entity="ACME", rule="r", severity="warning", evidence=evidence,
                     model_version="v1")  # fmt: skip

    async def run() -> tuple[list[Alert], list[Alert], dict, dict]:
        sink = ClickHouseSink(settings.clickhouse_dsn, settings.sink)
        await sink.start()
        store = ReadOnlyStore(settings.clickhouse_dsn, settings.queries)
        explainer = EventExplainer(
            settings.explanations, Registry(settings.models_dir), store, sink, 32
        )
        try:
            await write_events(sink, event, result, now)
            first = await explainer.attach([alert("e-1"), alert("not-stored"), alert("bad")])
            replayed = await explainer.attach([alert("e-1")])
            found = await explainer.explain_event("e-1", None)
            unknown = await explainer.explain_event("no-such-event", "news")
            # Explaining has had its share of the time for the next two seconds (as after an
            # explanation of t s at a share of t / (t + 2)): an alert waits for nothing, a
            # request waits its turn.
            explainer._next_start = asyncio.get_running_loop().time() + 2
            started = time.monotonic()
            paused = await explainer.attach([alert("e-1")])
            paused_s = time.monotonic() - started
            asked = await explainer.explain_event("e-1", "news")
            asked_s = time.monotonic() - started
        finally:
            explainer.close()
            await sink.stop()
        return first, replayed, found, unknown, paused, paused_s, asked, asked_s

    create_tables_in(settings)
    first, replayed, found, unknown, paused, paused_s, asked, asked_s = asyncio.run(run())
    assert paused[0].evidence["explanation_error"] == "over explanations.max_cpu_share (1)"
    assert paused_s < 1.0
    assert "error" not in asked and asked_s >= 2.0
    assert asked["attributions"][0]["feature"] == "bankruptcy"
    evidence = first[0].evidence
    assert "explanation_error" not in evidence, evidence
    assert evidence["explanation"].startswith("+bankruptcy")
    assert replayed[0].evidence == evidence and replayed[0].alert_id == first[0].alert_id
    assert first[1].evidence["explanation_error"] == "the event is not in the store"
    assert first[2].evidence["explanation_error"].startswith("the stored event is invalid: ")
    assert found["domain"] == "news" and found["model_version"] == "v1"
    assert found["label"] == "negative" and found["attributions"][0]["feature"] == "bankruptcy"
    assert unknown["error"] == "no scored event with this id in the store"
    rows = query(settings, "SELECT event_id, model_version, short FROM explanations FINAL")
    assert [(r[0], r[1]) for r in rows] == [("e-1", "v1")]
    assert rows[0][2] == evidence["explanation"]


def test_find_events_waits_for_missing_ones_and_names_invalid_rows(
    tmp_path: Path, keyword_model: Path
) -> None:
    """The real embedded store: a stored event is found, one whose row no longer parses is
    invalid with the reason, and one never stored is neither, after the wait; a lookup over
    the store's [queries] limits comes back as that domain's error."""
    settings = isolated_settings(tmp_path / "home", registry_dir=keyword_model.parent.parent.parent)
    scorer = load_scorer(keyword_model, "cpu", 32)
    now = datetime.now(UTC)
    event = NewsEvent(id="e-1", ts=now, source="wire", ticker="ACME", headline="a report")
    (prediction,) = scorer.score([domains.get("news").model_input(event)])
    result = domains.get("news").scored_result(event, prediction, scorer, 1, now, now, ORIGIN)

    async def run() -> tuple[Lookup, float, Lookup]:
        sink = ClickHouseSink(settings.clickhouse_dsn, settings.sink)
        await sink.start()
        try:
            await write_events(sink, event, result, now)
            store = ReadOnlyStore(settings.clickhouse_dsn, settings.queries)
            started = asyncio.get_running_loop().time()
            wanted = [("news", "e-1"), ("news", "bad"), ("news", "never"), ("tickets", "e-1")]
            lookup = await find_events(store, wanted, 0.6)
            waited = asyncio.get_running_loop().time() - started
            limits = settings.queries.model_copy(update={"max_rows_to_read": 1})
            over = ReadOnlyStore(settings.clickhouse_dsn, limits)
            return lookup, waited, await find_events(over, [("news", "e-1")], 0)
        finally:
            await sink.stop()

    create_tables_in(settings)
    lookup, waited, failed = asyncio.run(run())
    assert list(lookup.found) == [("news", "e-1")]
    assert lookup.found[("news", "e-1")].model_input == "a report"
    assert lookup.found[("news", "e-1")].predicted_label == prediction["label"]
    assert list(lookup.invalid) == [("news", "bad")]
    assert "headline" in lookup.invalid[("news", "bad")]
    assert lookup.errors == {}
    assert waited >= 0.6  # the never-stored events were looked for until the wait was over
    assert not failed.found and list(failed.errors) == ["news"]
    assert "rows" in str(failed.errors["news"]).lower()


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        (["news", "--text", "  "], 2, "--text is empty"),
        (["weather", "--text", "x"], 2, "'weather' is not one of"),
        (["sensors", "--text", "x"], 2, "sensors models are explained by --event-id or --file"),
        (["news", "--text", "x", "--event-id", "e"], 2, "exactly one of"),
        (["news", "--event-id", "nope"], 1, "no scored news event with id 'nope' in the store"),
        (["news", "--text", "x", "--version", "v9"], 1, "news has no version 'v9'"),
        (["news", "--text", "x", "--target", "bullish"], 1, "unknown label 'bullish'"),
    ],
)
def test_explain_command_bad_inputs_are_one_line(
    tmp_path: Path,
    keyword_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALYARD_REGISTRY_DIR", str(keyword_model.parent.parent.parent))
    create_tables_in(isolated_settings(tmp_path / "home"))
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", *arguments])
    assert exit_info.value.code == code
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error


def test_explain_command_prints_json(
    tmp_path: Path,
    keyword_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGNALYARD_REGISTRY_DIR", str(keyword_model.parent.parent.parent))
    main(["explain", "news", "--text", "the report said bankruptcy", "--json", "--steps", "8"])
    explained = json.loads(capsys.readouterr().out)
    assert explained["version"] == "v1" and explained["label"] == "negative"
    assert explained["steps"] == 8 and explained["method"] == "integrated-gradients"
    words = [a["feature"] for a in explained["attributions"]]
    assert words == ["the", "report", "said", "bankruptcy"]
