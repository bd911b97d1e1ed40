"""The defect model: selection out of fold, a folder that loads without pickle, mode figures."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from models.data import FAILURE_MODES, SensorData, read_readings
from models.errors import DataError, ModelNotFoundError
from models.sensor_model import (
    CONFIG_FILE,
    SensorModel,
    features,
    load_sensor_model,
    save_sensor_model,
)
from models.serving.sensor_inference import SensorEngine
from models.splits import subset
from models.training.fitting import FitResult
from models.training.metrics import best_f1_threshold, failure_mode_metrics
from models.training.options import TrainOptions
from models.training.train_defect import train_defect
from signalyard.demo.synthetic import write_training_csv

OPTIONS = TrainOptions(epochs=60, show_progress=False).resolved("defect")


@pytest.fixture(scope="module")
def readings(tmp_path_factory: pytest.TempPathFactory) -> SensorData:
    path = tmp_path_factory.mktemp("sensors") / "ai4i.csv"
    return read_readings(write_training_csv("sensors", path, 1500))


@pytest.fixture(scope="module")
def trained(readings: SensorData) -> tuple[SensorModel, FitResult]:
    """The model of every reading, and how its training went (one training for the module)."""
    return train_defect(readings, OPTIONS)


def test_the_threshold_is_chosen_on_out_of_fold_predictions(
    readings: SensorData, trained: tuple[SensorModel, FitResult]
) -> None:
    model, fit = trained
    x, y = features(readings.readings), np.asarray(readings.failure)
    # Member k is the model of fold k; each predicts the rows it did not train on.
    folds = StratifiedKFold(OPTIONS.folds, shuffle=True, random_state=OPTIONS.seed).split(x, y)
    oof = np.zeros(len(y))
    for member, (_, held_out) in zip(model.failure, folds, strict=True):
        oof[held_out] = member.predict(x[held_out])
    assert model.threshold == best_f1_threshold(oof, y)
    # Tuned on the rows it is scored on, the threshold would be another one.
    assert model.threshold != best_f1_threshold(model.failure_probability(x), y)
    cv = model.cross_validation
    assert cv["folds"] == OPTIONS.folds == len(cv["per_fold"]) == len(model.failure)
    assert cv["rounds"] == fit.best_epoch <= fit.epochs_run <= OPTIONS.epochs
    assert sum(fold["n"] for fold in cv["per_fold"]) == len(y)
    assert cv["f1_std"] >= 0 and cv["out_of_fold"]["threshold"] == model.threshold


def test_a_saved_model_loads_without_pickle_and_predicts_the_same(
    readings: SensorData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = train_defect(subset(readings, range(600)), OPTIONS)
    save_sensor_model(model, tmp_path)
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".txt"}

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a model folder must not be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    loaded = load_sensor_model(tmp_path)
    x = features(readings.readings)
    for ours, theirs in zip(model.predict_proba(x), loaded.predict_proba(x), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert loaded.threshold == model.threshold
    assert loaded.cross_validation == model.cross_validation

    (tmp_path / "mode-0.lgb.txt").unlink()
    with pytest.raises(ModelNotFoundError, match=r"lacks mode-0\.lgb\.txt"):
        load_sensor_model(tmp_path)
    (tmp_path / CONFIG_FILE).write_text('{"model_type": "signalyard-sensor-mlp"}')
    with pytest.raises(ModelNotFoundError, match="signalyard-sensor-mlp"):
        load_sensor_model(tmp_path)


def test_failure_modes_are_learned_where_the_flag_is(
    trained: tuple[SensorModel, FitResult],
) -> None:
    model, _ = trained
    figures = model.cross_validation["out_of_fold"]
    # The synthetic world's modes follow the AI4I limits exactly, so they can be learned.
    assert figures["mode_accuracy_given_flag"] > 0.8
    assert set(figures["mode_recall"]) <= set(FAILURE_MODES)


def test_the_engine_decides_as_both_heads_on_every_reading_would(
    readings: SensorData, trained: tuple[SensorModel, FitResult]
) -> None:
    model, _ = trained
    engine = SensorEngine(model)
    failure, modes = model.predict_proba(features(readings.readings))
    expected = [
        FAILURE_MODES[int(np.argmax(row))] if p >= model.threshold else "none"
        for p, row in zip(failure, modes, strict=True)
    ]
    decided_failure, defects, decided = engine.decide(readings.readings)
    np.testing.assert_array_equal(decided_failure, failure)
    np.testing.assert_array_equal(defects, failure >= model.threshold)
    assert decided == expected
    assert 0 < defects.sum() < len(decided)
    none_failure, none_defects, none_modes = engine.decide([])
    assert none_failure.shape == none_defects.shape == (0,) and none_modes == []


def test_too_few_failures_is_a_clear_error(readings: SensorData) -> None:
    healthy = [i for i, failed in enumerate(readings.failure) if not failed][:50]
    with pytest.raises(DataError, match="0 failed rows"):
        train_defect(subset(readings, healthy), OPTIONS)


def test_failure_mode_figures() -> None:
    modes = [("HDF",), ("PWF", "OSF"), ("TWF",), (), ()]
    failure = [1, 1, 1, 1, 0]
    probability = np.array([0.9, 0.8, 0.1, 0.9, 0.9])  # the TWF row is missed
    mode_probability = np.eye(5)[[1, 3, 0, 1, 1]]  # HDF, OSF, TWF, ...
    figures = failure_mode_metrics(
        probability, mode_probability, 0.5, failure, modes, FAILURE_MODES
    )
    assert figures["failures_with_mode"] == 3  # a failure of no known mode is not counted
    assert figures["mode_accuracy"] == pytest.approx(2 / 3)
    assert figures["mode_accuracy_given_flag"] == 1.0
    assert figures["mode_recall"]["TWF"] == {"n": 1, "recall": 0.0}
    assert figures["mode_recall"]["OSF"] == {"n": 1, "recall": 1.0}
    assert figures["mode_recall"]["PWF"] == {"n": 1, "recall": 1.0}


def test_a_sensor_model_loads_and_scores_without_the_text_runtime(registry_dir: Path) -> None:
    """A worker that scores sensors alone imports neither torch, transformers nor ONNX
    Runtime: a fresh interpreter imports the worker and loads and runs the live defect model."""
    program = f"""
import sys
import streams.app
from models.registry import Registry
from models.serving.loading import load_scorer
scorer = load_scorer(Registry({str(registry_dir)!r}).live_dir("sensors"))
reading = dict(machine_type="M", air_temp_k=300.1, process_temp_k=310.2, rpm=1500.0,
               torque_nm=40.0, tool_wear_min=100.0)
print(scorer.score([reading])[0])
print(sorted({{"torch", "transformers", "onnxruntime"}} & sys.modules.keys()))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    prediction, imported = done.stdout.strip().splitlines()[-2:]
    assert "failure_probability" in prediction
    assert imported == "[]"
