"""Adaptation rounds through a teacher, on tiny models: the teacher adapts and is registered,
its confident view of unlabeled stream text becomes the student's transfer set (threshold and
per-class cap respected and counted), and a round without unlabeled text works from labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, NEWS_WORDS, TARGET
from transformers import AutoTokenizer, BertConfig, BertModel

from config.settings import AdaptationSettings, load_settings
from models.calibration import Calibration
from models.registry import Registry
from models.serving.loading import load_scorer
from models.text_model import load_text_classifier
from models.training.adaptation import AdaptOptions
from models.training.retraining import LabeledRow, retrain
from models.training.teacher_rounds import (
    STUDENT_DEFAULTS,
    TEACHER_DEFAULTS,
    round_options,
    select_confident,
    teacher_of,
)
from signalyard.cli import main


def settings(**changes: object) -> AdaptationSettings:
    fast = {"mode": "full", "min_holdout": 5, "gate_margin": 0.0, "source_tolerance": 1.0}
    return load_settings().adaptation.model_copy(update=fast | changes)


def labeled() -> list[LabeledRow]:
    return [LabeledRow(f"e{i}", label, text) for i, (text, label) in enumerate(TARGET * 2)]


def load(folder: Path):  # type: ignore[no-untyped-def]
    return load_scorer(folder, "cpu", 16)


def test_select_confident_keeps_the_surest_under_the_threshold_and_the_cap() -> None:
    confidence = np.array([0.95, 0.5, 0.99, 0.97, 0.91, 0.92, 0.89])
    predicted = ["a", "a", "a", "a", "b", "b", "c"]
    assert select_confident(confidence, predicted, 0.9, 2) == [2, 3, 4, 5]
    assert select_confident(confidence, predicted, 0.9, 10) == [0, 2, 3, 4, 5]
    assert select_confident(confidence, predicted, 0.999, 10) == []


def test_round_options_fill_what_is_unset_with_the_round_defaults() -> None:
    teacher, student = round_options(AdaptOptions(replay_ratio=0.25))
    assert (teacher.epochs, teacher.learning_rate) == (5, 3e-5)
    assert (student.epochs, student.learning_rate) == (3, 3e-5)
    assert teacher.replay_ratio == student.replay_ratio == 0.25
    # What is set is kept, for both.
    teacher, student = round_options(AdaptOptions(epochs=1, learning_rate=1e-3))
    assert (teacher.epochs, teacher.learning_rate) == (student.epochs, student.learning_rate)
    assert (student.epochs, student.learning_rate) == (1, 1e-3)


def test_a_round_registers_an_adapted_teacher_and_a_student_taught_from_the_stream(
    student_home: Registry,
) -> None:
    registry = student_home
    stream = [f"${t} {p} update" for t in ("EFX", "GLOB") for ps in
              NEWS_WORDS.values() for p in ps]  # fmt: skip
    asked: list[int] = []

    def unlabeled(limit: int) -> list[str]:
        asked.append(limit)
        return stream[:limit]

    adaptation = settings(
        unlabeled_events=15, unlabeled_threshold=0.0, unlabeled_class_cap=4, student_from="live"
    )
    outcome = retrain("news", registry, labeled(), adaptation, load, {"reason": "t"}, unlabeled)
    assert asked == [15]
    assert outcome.teacher_version == "v3" and outcome.version == "v4", outcome

    teacher = registry.metadata("news", "v3")
    assert teacher["role"] == "teacher" and teacher["adapted_from"] == "v1"
    assert teacher["adaptation"]["request"] == {"reason": "t"}
    assert {k: teacher["adaptation"]["options"][k] for k in TEACHER_DEFAULTS} == TEACHER_DEFAULTS
    assert registry.live_version("news") != "v3"  # a teacher serves rounds, not events

    student = registry.metadata("news", "v4")
    assert student["adapted_from"] == "v2"
    assert {k: student["adaptation"]["options"][k] for k in STUDENT_DEFAULTS} == STUDENT_DEFAULTS
    taught = student["distillation"]
    assert taught["teacher"]["version"] == "v3"
    transfer = taught["transfer"]["stream"]
    assert transfer["events_read"] == 15 and transfer["class_cap"] == 4
    # Every text passes a threshold of 0; the cap keeps 4 of each predicted class at most.
    assert sum(transfer["label_counts"].values()) == transfer["kept"] <= 12
    assert all(count <= 4 for count in transfer["label_counts"].values())
    assert transfer["kept"] == sum(min(4, n) for n in _predicted_counts(registry, stream[:15]))
    assert Calibration.of(student).accuracy is not None
    assert taught["student"] == {"from": "live", "version": "v2"}
    # The next round starts from the adapted teacher.
    assert teacher_of(registry, "news", "v4") == "v3"


def test_a_round_can_cut_its_student_afresh_from_the_adapted_teacher(
    student_home: Registry,
) -> None:
    registry = student_home
    layers = registry.metadata("news", "v2")["distillation"]["student"]["layers"]
    adaptation = settings(student_from="teacher")
    outcome = retrain("news", registry, labeled(), adaptation, load, {}, lambda limit: [])
    assert outcome.teacher_version == "v3" and outcome.version == "v4", outcome
    taught = registry.metadata("news", "v4")["distillation"]
    assert taught["student"] == {"from": "teacher layers", "layers": layers}
    # The same architecture as the live student, so that it serves where v2 served.
    shapes = [
        {k: v.shape for k, v in load_text_classifier(registry.version_dir("news", v))[0]
         .state_dict().items()}
        for v in ("v2", "v4")
    ]  # fmt: skip
    assert shapes[0] == shapes[1]


def test_a_student_of_another_architecture_learns_on_instead_of_being_cut(
    teacher_home: tuple[Registry, Path, Path],
    tmp_path: Path,
    tiny_base: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, data, _ = teacher_home
    narrow = tmp_path / "narrow"  # half the teacher's width: no cut of it has these shapes
    config = BertConfig.from_pretrained(tiny_base)
    config.hidden_size, config.intermediate_size = 16, 32
    BertModel(config).save_pretrained(narrow)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(narrow)
    main(["distill", "news", "--teacher", "v1", "--data", str(data), "--student", str(narrow),
          "--epochs", "1", *FAST])  # fmt: skip
    capsys.readouterr()
    assert teacher_of(registry, "news", "v2") == "v1"
    adaptation = settings(student_from="teacher")
    outcome = retrain("news", registry, labeled(), adaptation, load, {}, lambda limit: [])
    assert outcome.teacher_version == "v3" and outcome.version == "v4", outcome
    assert registry.metadata("news", "v4")["distillation"]["student"] == {
        "from": "live",
        "version": "v2",
        "why": "not its teacher cut to 2 layers",
    }
    narrow_shapes = [
        tuple(load_text_classifier(registry.version_dir("news", v))[0].head.weight.shape)
        for v in ("v2", "v4")
    ]
    assert narrow_shapes[0] == narrow_shapes[1] == (3, 16)


def _predicted_counts(registry: Registry, texts: list[str]) -> list[int]:
    scorer = load(registry.version_dir("news", "v3"))
    predicted = [row["label"] for row in scorer.score(texts)]
    return [predicted.count(label) for label in set(predicted)]


def test_a_round_without_unlabeled_events_learns_from_labels_alone(
    student_home: Registry,
) -> None:
    registry = student_home
    outcome = retrain("news", registry, labeled(), settings(), load, {}, lambda limit: [])
    assert outcome.teacher_version == "v3" and outcome.version == "v4"
    transfer = registry.metadata("news", "v4")["distillation"]["transfer"]
    assert transfer["stream"]["events_read"] == 0 and transfer["stream"]["kept"] == 0
    assert transfer["labeled_rows"] > 0


def test_head_mode_or_a_model_without_a_teacher_adapts_as_before(
    student_home: Registry,
) -> None:
    registry = student_home
    outcome = retrain("news", registry, labeled(), settings(mode="head"), load, {})
    assert outcome.teacher_version is None and outcome.version == "v3"
    # Still the same student: the next full round goes through its teacher.
    assert registry.metadata("news", "v3")["distillation"]["carried_from"] == "v2"
    assert teacher_of(registry, "news", "v3") == "v1"


def test_a_refused_candidate_keeps_no_teacher(student_home: Registry) -> None:
    registry = student_home
    outcome = retrain("news", registry, labeled(), settings(gate_margin=1.0), load, {})
    assert not outcome.promoted and outcome.teacher_version is None and outcome.version == "v3"
    assert registry.version_ids("news") == ["v1", "v2", "v3"]
    assert registry.metadata("news", "v3")["distillation"]["teacher"]["version"] is None
    assert registry.live_version("news") == "v2"


def test_calibrate_records_a_temperature_once(
    student_home: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = student_home
    folder = registry.version_dir("news", "v1")
    metadata = json.loads((folder / "metadata.json").read_text())
    del metadata["calibration"]  # as a model trained before calibration was recorded
    (folder / "metadata.json").write_text(json.dumps(metadata))
    main(["models", "calibrate", "news", "v1"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["temperature"] > 0 and record["rows"] == metadata["data"]["validation_rows"]
    assert registry.metadata("news", "v1")["calibration"] == record
    assert load(folder).calibration == Calibration(record["temperature"], record["accuracy"])
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "calibrate", "news", "v1"])
    assert exit_info.value.code == 1
    assert "was calibrated when it was trained" in capsys.readouterr().err
