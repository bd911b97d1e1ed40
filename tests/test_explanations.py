"""Attributions of tiny models on crafted inputs: the input that alone decides the label
ranks first, sub-word pieces come back as words, and the completeness gap is reported."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import test_training

from models.explanations import explain_readings, explain_texts
from models.registry import Registry
from models.sensor_model import load_sensor_model
from models.text_model import load_text_classifier
from models.training import TrainOptions, train_model

tiny_base = test_training.tiny_base
FILLER = ["the", "company", "said", "on", "monday", "that", "its", "report", "shows", "news"]
KEYWORDS = {"positive": "skyrocketing", "negative": "bankruptcy", "neutral": "scheduled"}


@pytest.fixture(scope="module")
def keyword_model(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A tiny news model trained on filler sentences where one keyword decides the label."""
    folder = tmp_path_factory.mktemp("keyword")
    rng = random.Random(5)
    rows = []
    for label, keyword in KEYWORDS.items():
        for _ in range(30):
            words = rng.sample(FILLER, 6)
            words.insert(rng.randrange(7), keyword)
            rows.append([" ".join(words), label])
    data = test_training.write_csv(folder / "news.csv", ["text", "label"], rows)
    registry = Registry(folder / "registry")
    options = test_training.fast(tiny_base, epochs=12, batch_size=8, learning_rate=3e-3)
    train_model("news", data, registry, options)
    return registry.version_dir("news", "v1")


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
    train_model("sensors", sensors_csv, registry, TrainOptions(epochs=40))
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


sensors_csv = test_training.sensors_csv
