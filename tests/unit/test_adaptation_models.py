"""Adapting live models to a target domain, on the tiny random BERT of ``test_training``.

What is checked: the adapted folder registers and loads, keeps pointing at the source data,
and learns the target (labels flipped against the source must move accuracy); sensors
retrain on the target and every source row; ``evaluate_data`` agrees with ``evaluate``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from helpers import NEWS_WORDS, fast, write_csv

from models.base import SensorReading
from models.data import SENTIMENT_LABELS, SensorData, TextData, read_readings, read_text
from models.registry import CONTENT_HASH, Registry, content_sha256
from models.serving.loading import load_scorer
from models.splits import source_validation, split_indices, subset
from models.training.adaptation import AdaptOptions, adapt_model
from models.training.evaluation import evaluate, evaluate_data
from models.training.trainer import TrainOptions, train_model

# The fixtures of test_training, shared rather than rebuilt.
FLIPPED = {"positive": "negative", "negative": "positive", "neutral": "neutral"}


def news_rows(numbers: range, relabel: dict[str, str] | None = None) -> TextData:
    rows = [
        (f"{phrase} {i}", (relabel or {}).get(label, label))
        for label, phrases in NEWS_WORDS.items()
        for phrase in phrases
        for i in numbers
    ]
    return TextData([text for text, _ in rows], [label for _, label in rows])


@pytest.fixture(scope="module")
def news_registry(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Registry:
    """A registry whose live news model (v1) learned the source rows of ``news.csv``."""
    folder = tmp_path_factory.mktemp("news")
    source = news_rows(range(6))
    csv = write_csv(
        folder / "news.csv", ["text", "label"], list(zip(source.texts, source.labels, strict=True))
    )
    registry = Registry(folder / "registry")
    options = fast(tiny_base, mode="head", learning_rate=0.05, patience=100, epochs=150)
    train_model("news", "sentiment", csv, registry, options)
    return registry


def head_options(**overrides: object) -> AdaptOptions:
    return AdaptOptions(mode="head", max_seq_length=16, device="cpu", **overrides)


def test_adapted_model_registers_loads_and_keeps_its_source(
    tmp_path: Path, news_registry: Registry
) -> None:
    live_dir = news_registry.live_dir("news")
    live = json.loads((live_dir / "metadata.json").read_text())
    source = read_text(Path(live["data"]["path"]), "sentiment", SENTIMENT_LABELS)
    train_rows, validation_rows = split_indices(source.labels, 0.15, 13)
    assert live["data"]["label_counts"] == {
        label: sum(source.labels[i] == label for i in train_rows) for label in SENTIMENT_LABELS
    }
    expected = [source.texts[i] for i in validation_rows]
    assert source_validation(live_dir) == TextData(
        expected, [source.labels[i] for i in validation_rows]
    )

    target = news_rows(range(10, 14))
    options = AdaptOptions(
        epochs=1, batch_size=8, max_seq_length=16, device="cpu", seed=5, replay_ratio=1.0
    )
    metadata = adapt_model("news", live_dir, target, tmp_path / "adapted", options)
    version = news_registry.register("news", tmp_path / "adapted", promote=False)
    assert version == "v2" and news_registry.live_version("news") == "v1"
    folder = news_registry.version_dir("news", version)
    stored = json.loads((folder / "metadata.json").read_text())
    assert stored == {**metadata, CONTENT_HASH: content_sha256(folder)}
    assert stored["adapted_from"] == "v1" and stored["model_name"] == live["model_name"]
    assert stored["mode"] == "full" and stored["base_model"] == live["base_model"]
    for key in ("path", "sha256", "seed", "validation_fraction"):
        assert stored["data"][key] == live["data"][key]
    # 36 target rows are too few to hold out: all train, replayed with as many source rows.
    assert stored["data"]["target"] == {
        "rows": 36, "train_rows": 36, "validation_rows": 0,
        "label_counts": {"negative": 12, "neutral": 12, "positive": 12},
    }  # fmt: skip
    assert stored["data"]["replay"]["rows"] == 36
    assert stored["options"]["seed"] == 13 and stored["adaptation"]["options"]["seed"] == 5
    assert json.loads((folder / "metrics.json").read_text()) == stored["metrics"]
    assert source_validation(folder).texts == expected  # type: ignore[union-attr]
    scorer = load_scorer(folder, device="cpu", max_seq_length=16)
    assert scorer.version == "v2" and len(scorer.score(["profit soars 99"])) == 1

    # Adapting the adapted model still replays the original source, and carries its int8 plan
    # so that an int8 gate judges the candidate as it would serve.
    assert "quantization" not in stored and "onnx_quantization" not in stored
    plan = {"keep_fp32": ["head"], "changed": 0.0}
    plans = {"quantization": plan, "onnx_quantization": {**plan, "runtime": "onnx-int8"}}
    (folder / "metadata.json").write_text(json.dumps({**stored, **plans}))
    options = head_options(epochs=2, replay_ratio=0.5)
    again = adapt_model("news", folder, target, tmp_path / "again", options)
    assert again["adapted_from"] == "v2" and again["data"]["path"] == live["data"]["path"]
    assert again["data"]["replay"]["rows"] == 18 and again["mode"] == "head"
    for key, carried in plans.items():
        assert again[key] == {**carried, "carried_from": "v2"}
    int8 = load_scorer(tmp_path / "again", device="cpu", max_seq_length=16, precision="int8")
    assert int8.engine.keep_fp32 == ("head",) and type(int8.engine.model.head) is torch.nn.Linear


def test_flipped_target_labels_move_target_accuracy(
    tmp_path: Path, news_registry: Registry
) -> None:
    live_dir = news_registry.live_dir("news")
    target, test = news_rows(range(20, 30), FLIPPED), news_rows(range(30, 34), FLIPPED)
    options = head_options(learning_rate=0.05, epochs=150, patience=100, replay_ratio=0.0)
    metadata = adapt_model("news", live_dir, target, tmp_path / "flipped", options)
    assert metadata["data"]["target"]["validation_rows"] == 14  # 90 rows: enough to hold out
    assert metadata["adaptation"]["metrics_on"] == "target validation rows"
    before = evaluate_data(load_scorer(live_dir, device="cpu", max_seq_length=16), test)
    after = evaluate_data(load_scorer(tmp_path / "flipped", device="cpu", max_seq_length=16), test)
    assert before["accuracy"] < 0.5 and after["accuracy"] >= before["accuracy"] + 0.4
    assert metadata["metrics"]["accuracy"] >= 0.8


def test_missing_source_skips_replay(tmp_path: Path, tiny_base: Path) -> None:
    source = news_rows(range(3))
    csv = write_csv(
        tmp_path / "gone.csv",
        ["text", "label"],
        list(zip(source.texts, source.labels, strict=True)),
    )
    registry = Registry(tmp_path / "registry")
    train_model("news", "sentiment", csv, registry, fast(tiny_base, mode="head", epochs=3))
    csv.unlink()
    live_dir = registry.live_dir("news")
    assert source_validation(live_dir) is None
    metadata = adapt_model("news", live_dir, source, tmp_path / "out", head_options(epochs=2))
    assert metadata["data"]["replay"]["rows"] == 0
    assert "not found" in metadata["data"]["replay"]["skipped"]


def reading(rng: random.Random, air: float, torque: float) -> SensorReading:
    return SensorReading(
        machine_type=rng.choice("LMH"), air_temp_k=air, process_temp_k=air + 10,
        rpm=rng.uniform(1300, 1700), torque_nm=torque, tool_wear_min=rng.uniform(0, 200),
    )  # fmt: skip


def test_sensor_adaptation_learns_a_region_the_source_never_saw(
    tmp_path: Path, sensors_csv: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    train_model("sensors", "defect", sensors_csv, registry, TrainOptions(show_progress=False))
    live_dir = registry.live_dir("sensors")
    source = source_validation(live_dir)
    assert source is not None

    # The target runs hotter, and there it fails at a torque the source bears without harm.
    rng = random.Random(8)
    target = [reading(rng, rng.uniform(320, 330), rng.uniform(20, 60)) for _ in range(200)]
    failure = [int(r["torque_nm"] > 45) for r in target]
    modes = [("OSF",) if f else () for f in failure]
    labeled = SensorData(target, failure, modes)
    metadata = adapt_model("sensors", live_dir, labeled, tmp_path / "out", AdaptOptions())

    version = registry.register("sensors", tmp_path / "out", promote=False)
    live = load_scorer(live_dir, device="cpu")
    candidate = load_scorer(registry.version_dir("sensors", version), device="cpu")
    held_out = subset(labeled, range(100, 200))
    assert evaluate_data(live, held_out)["f1"] < 0.5
    assert evaluate_data(candidate, held_out)["f1"] > 0.9
    # Every source training row is replayed: the source is not forgotten.
    live_metadata = json.loads((live_dir / "metadata.json").read_text())
    assert metadata["data"]["replay"]["rows"] == live_metadata["data"]["train_rows"]
    source_rows = read_readings(sensors_csv)
    assert evaluate_data(candidate, source_rows)["f1"] > 0.9
    cv = metadata["adaptation"]["cross_validation"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cv["threshold"] == config["threshold"]
    assert len(cv["per_fold"]) == cv["folds"]


def test_evaluate_data_equals_evaluate(
    news_registry: Registry, sensors_csv: Path, tmp_path: Path
) -> None:
    news_dir = news_registry.version_dir("news", "v1")
    news_csv = Path(json.loads((news_dir / "metadata.json").read_text())["data"]["path"])
    scorer = load_scorer(news_dir, device="cpu", max_seq_length=16)
    rows = read_text(news_csv, "sentiment", SENTIMENT_LABELS)
    assert evaluate_data(scorer, rows) == evaluate(scorer, news_csv)

    registry = Registry(tmp_path)
    options = TrainOptions(epochs=3, show_progress=False, device="cpu")
    sensors = load_scorer(
        registry.version_dir(
            "sensors", train_model("sensors", "defect", sensors_csv, registry, options)
        )
    )
    assert evaluate_data(sensors, read_readings(sensors_csv)) == evaluate(sensors, sensors_csv)
    with pytest.raises(TypeError):
        evaluate_data(sensors, rows)


def test_a_given_validation_file_is_the_split_trained_and_replayed_around(
    tmp_path: Path, tiny_base: Path
) -> None:
    """``--validation FILE``: every data row trains, the file's rows validate, and an
    adaptation replays from the data file and reports on the same validation rows."""
    train, held = news_rows(range(5)), news_rows(range(20, 22))
    paths = [
        write_csv(tmp_path / name, ["text", "label"], list(zip(*rows, strict=True)))
        for name, rows in (("train.csv", (train.texts, train.labels)),
                           ("validation.csv", (held.texts, held.labels)))
    ]  # fmt: skip
    registry = Registry(tmp_path / "registry")
    options = fast(tiny_base, mode="head", epochs=3, learning_rate=0.05, validation_data=paths[1])
    live_dir = registry.version_dir(
        "news", train_model("news", "sentiment", paths[0], registry, options)
    )
    live = json.loads((live_dir / "metadata.json").read_text())
    assert (live["data"]["train_rows"], live["data"]["validation_rows"]) == (45, 18)
    assert live["data"]["validation"]["path"] == str(paths[1].resolve())
    assert live["metrics"]["n"] == 18
    assert source_validation(live_dir) == held

    adapted = adapt_model(
        "news", live_dir, news_rows(range(30, 32)), tmp_path / "a", head_options(epochs=1)
    )
    assert adapted["data"]["validation"] == live["data"]["validation"]
    assert adapted["data"]["replay"]["rows"] == 9  # half a source row per target row
    assert source_validation(tmp_path / "a") == held

    paths[1].write_text("text,label\nchanged,neutral\n")
    assert source_validation(live_dir) is None  # the file trained around is gone
