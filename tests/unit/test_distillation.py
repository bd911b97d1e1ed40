"""Distillation on a tiny teacher and student: the student comes to agree with the teacher,
its lineage is in the metadata, and bad inputs are one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import FAST, write_csv
from transformers import BertConfig, BertModel

from models.registry import Registry
from models.serving.inference import TextEngine
from models.text_model import (
    TextClassifier,
    load_encoder,
    load_text_classifier,
    save_text_classifier,
)
from models.training.distillation import agreement, shrink_encoder
from signalyard.cli import main


def _engine(model: TextClassifier, folder: Path) -> TextEngine:
    _, tokenizer = load_encoder(folder)
    return TextEngine(model.eval(), tokenizer, "cpu", 16, 64, "fp32")


def test_student_learns_to_agree_with_the_teacher(
    teacher_home: tuple[Registry, Path, Path],
    tiny_base: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, data, unlabeled = teacher_home
    texts = [line.split(",")[0] for line in data.read_text().splitlines()[1:]]
    texts += [json.loads(line)["text"] for line in unlabeled.read_text().splitlines()]
    teacher_dir = registry.version_dir("news", "v1")
    teacher, _, _ = load_text_classifier(teacher_dir)
    teacher_view = _engine(teacher, teacher_dir).predict_proba(texts)
    torch.manual_seed(13)
    fresh = TextClassifier(load_encoder(tiny_base)[0], 3)
    before = agreement(_engine(fresh, tiny_base).predict_proba(texts), teacher_view)

    main(["distill", "news", "--teacher", "v1", "--data", str(data), "--unlabeled",
          str(unlabeled), "--student", str(tiny_base), "--epochs", "10", "--lr", "3e-3",
          "--head-lr", "3e-3", "--alpha", "0.8", "--no-promote", *FAST])  # fmt: skip
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["version"] == "v2" and registry.live_version("news") == "v1"
    student, _, _ = load_text_classifier(registry.version_dir("news", "v2"))
    after = agreement(_engine(student, tiny_base).predict_proba(texts), teacher_view)
    assert after >= 0.85 and after > before + 0.2, (before, after)


def test_student_cut_from_the_teacher_records_its_lineage(
    teacher_home: tuple[Registry, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    registry, data, unlabeled = teacher_home
    main(["distill", "news", "--teacher", "v1", "--data", str(data), "--unlabeled",
          str(unlabeled), "--student-layers", "1", "--temperature", "3", "--epochs", "2",
          *FAST])  # fmt: skip
    capsys.readouterr()
    assert registry.live_version("news") == "v2"
    folder = registry.version_dir("news", "v2")
    metadata = json.loads((folder / "metadata.json").read_text())
    lineage = metadata["distillation"]
    assert lineage["teacher"]["version"] == "v1" and lineage["temperature"] == 3
    assert lineage["alpha"] == 0.5 and lineage["student"]["from"] == "teacher layers"
    assert lineage["student"]["layers"] == [1]  # the last of the teacher's two
    files = lineage["transfer"]["files"]
    assert [f["rows"] for f in files] == [9] and len(files[0]["sha256"]) == 64
    assert lineage["transfer"]["unlabeled_rows"] == 9
    assert 0 <= lineage["agreement_with_teacher"] <= 1
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 1
    assert set(metadata["metrics"]) >= {"accuracy", "macro_f1"}


def test_a_narrower_student_learns_embeddings_through_a_projection_and_augmented_copies(
    teacher_home: tuple[Registry, Path, Path],
    tiny_base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry, data, unlabeled = teacher_home
    narrow = tmp_path / "narrow"
    encoder, tokenizer = load_encoder(tiny_base)
    config = encoder.config.to_dict() | {"hidden_size": 16, "intermediate_size": 32}
    BertModel(BertConfig(**config)).save_pretrained(narrow)
    tokenizer.save_pretrained(narrow)
    main(["distill", "news", "--teacher", "v1", "--data", str(data), "--unlabeled",
          str(unlabeled), "--student", str(narrow), "--hidden-weight", "1", "--augment", "2",
          "--epochs", "2", "--no-promote", *FAST])  # fmt: skip
    capsys.readouterr()
    folder = registry.version_dir("news", "v2")
    metadata = json.loads((folder / "metadata.json").read_text())
    transfer = metadata["distillation"]["transfer"]
    assert transfer["augmented_rows"] == 2 * transfer["labeled_rows"]
    assert transfer["unlabeled_rows"] == 9
    assert metadata["distillation"]["hidden_weight"] == 1
    assert metadata["distillation"]["augment"] == 2 and metadata["distillation"]["seed"] == 13
    # The projection was only for training: the student is saved at its own width.
    student, _, _ = load_text_classifier(folder)
    assert student.head.in_features == 16
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 16


def test_shrink_keeps_evenly_spaced_layers_and_the_last(tiny_base: Path) -> None:
    encoder, _ = load_encoder(tiny_base)
    student, kept = shrink_encoder(encoder, 1)
    assert kept == [1] and len(student.encoder.layer) == 1 and len(encoder.encoder.layer) == 2
    assert torch.equal(
        student.encoder.layer[0].output.dense.weight, encoder.encoder.layer[1].output.dense.weight
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--teacher", "v9"], "news has no version 'v9' (registered: v1)"),
        (["--teacher", "v1", "--unlabeled", "{no_text}"], "lacks column(s) text"),
        (["--teacher", "v1", "--student", "{other_labels}"], "the teacher's are"),
        (["--teacher", "v1", "--student-layers", "5"], "a student cannot have 5"),
        (
            ["--teacher", "v1", "--student", "{other_labels}", "--student-layers", "1"],
            "does not apply with --student",
        ),
    ],
)
def test_bad_inputs_are_one_line(
    teacher_home: tuple[Registry, Path, Path],
    tiny_base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    message: str,
) -> None:
    registry, data, _ = teacher_home
    no_text = write_csv(tmp_path / "no_text.csv", ["body"], [["shares jump"]])
    other = tmp_path / "other-labels"
    encoder, tokenizer = load_encoder(tiny_base)
    save_text_classifier(TextClassifier(encoder, 2), tokenizer, ["up", "down"], other)
    values = {"{no_text}": str(no_text), "{other_labels}": str(other)}
    arguments = [values.get(a, a) for a in arguments]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["distill", "news", "--data", str(data), *arguments, "--epochs", "1", *FAST])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert registry.version_ids("news") == ["v1"]
