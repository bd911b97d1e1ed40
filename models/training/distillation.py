"""Knowledge distillation: a small student learns a registered teacher's predictions.

    from models.training.distillation import DistillOptions, distill_model, teacher_cut

    distill_model(domain: DomainName, teacher_dir: Path, data: Path, unlabeled: Sequence[Path],
                  out_dir: Path, options: DistillOptions, student: Path | str | None) -> dict
    teacher_cut(teacher_dir: Path, layers: int | None, dropout: float)
        -> (TextClassifier, tokenizer, kept layer indices)

The loss of a row is Hinton et al.'s (2015): ``alpha * T^2 * KL(p_teacher,T || p_student,T)
+ (1 - alpha) * CE(label)``, with both distributions softened by the temperature ``T``;
unlabeled rows (the ``unlabeled`` files' texts, and ``augment`` perturbed copies of each
labeled training text, ``models.training.augmentation``) take the KL term alone, which is how
text that nobody labeled still carries the teacher's knowledge. ``hidden_weight`` adds
DistilBERT's cosine loss between the student's and the teacher's pooled embeddings; a student
narrower than its teacher maps its embedding to the teacher's width through a linear
projection learnt with it and dropped afterwards (as TinyBERT's embedding loss does).

The student starts from one of:
- ``None``: the teacher itself cut to ``student_layers`` of its transformer layers, evenly
  spaced with the first and the last kept (as DistilBERT was built from BERT), with the teacher's
  head: it starts close to the teacher and runs about ``layers / student_layers`` times faster;
- a registered classifier folder with the teacher's labels (continue a student);
- an encoder (folder, cached id, fetched encoder's path) with a fresh head.

The labeled data is split as ``signalyard train`` splits it; on the teacher's own file (same
SHA-256) with the teacher's seed, fraction or validation file, so the student validates on
rows the teacher never trained on (``data.same_as_teacher`` in the metadata says which).
The teacher's predictions are computed once, before training, in fp32.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional
from transformers import PreTrainedTokenizerBase

from config.settings import DomainName
from models.calibration import fit_calibration
from models.data import TextData, fingerprint, read_labeled, read_texts
from models.errors import DataError
from models.registry import read_metadata
from models.serving.inference import TextEngine, resolve_device, resolve_precision
from models.splits import split_source, subset
from models.tasks import LABELS_FILE, TAXONOMY_FILE, TEXT_TASKS, Task, task_of
from models.taxonomy import RiskTaxonomy
from models.text_model import (
    TextClassifier,
    load_encoder,
    load_text_classifier,
    save_text_classifier,
)
from models.training.augmentation import augmented
from models.training.fitting import FitResult, Validation, class_weights, fit, seed_everything
from models.training.options import TrainOptions
from models.training.train_text import (
    length_grouped,
    pooled_embeddings,
    text_metrics,
    validation_of,
)
from models.training.trainer import data_record, fit_record, software_versions, write_model_files

__all__ = ["DistillOptions", "distill_model", "shrink_encoder", "teacher_cut"]


class DistillOptions(BaseModel):
    """How the student learns; the schedule is a :class:`TrainOptions` (full mode)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.5, ge=0, le=1)  # weight of the teacher's soft labels
    hidden_weight: float = Field(default=0.0, ge=0)  # cosine loss on pooled embeddings
    augment: int = Field(default=0, ge=0)  # perturbed copies of each labeled training text
    student_layers: int | None = Field(default=None, gt=0)  # None: half the teacher's
    train: TrainOptions = TrainOptions()


def shrink_encoder(encoder: nn.Module, layers: int) -> tuple[nn.Module, list[int]]:
    """A copy of a BERT-family encoder keeping ``layers`` of its transformer layers, evenly
    spaced with the first and the last kept (12 -> 6: 0, 2, 4, 7, 9, 11); returns it and the
    kept layer indices (0-based)."""
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(stack, nn.ModuleList):
        raise DataError(f"cannot cut layers from a {type(encoder).__name__}: no encoder.layer")
    if layers > len(stack):
        raise DataError(f"the teacher has {len(stack)} layers; a student cannot have {layers}")
    keep = sorted({int(i) for i in np.linspace(len(stack) - 1, 0, layers).round()})
    student = copy.deepcopy(encoder)
    student.encoder.layer = nn.ModuleList(student.encoder.layer[i] for i in keep)
    student.config.num_hidden_layers = len(keep)
    return student, keep


def teacher_cut(
    teacher_dir: Path, layers: int | None, dropout: float
) -> tuple[TextClassifier, PreTrainedTokenizerBase, list[int]]:
    """The classifier in ``teacher_dir`` cut to ``layers`` of its transformer layers (None:
    half) by ``shrink_encoder``, with its head and ``dropout``; returns it, its tokenizer and
    the kept layer indices. Raises DataError for an encoder without BERT's layer stack."""
    teacher, tokenizer, _ = load_text_classifier(teacher_dir)
    total = len(getattr(getattr(teacher.encoder, "encoder", None), "layer", ()))
    encoder, keep = shrink_encoder(teacher.encoder, layers or max(1, total // 2))
    model = TextClassifier(encoder, teacher.head.out_features, dropout)
    model.head.load_state_dict(teacher.head.state_dict())
    return model, tokenizer, keep


def _student(
    teacher_dir: Path, student: Path | str | None, labels: list[str], options: DistillOptions
) -> tuple[TextClassifier, Any, dict[str, Any]]:
    """The student model, its tokenizer and how it was initialised (for the metadata)."""
    if student is None:
        model, tokenizer, keep = teacher_cut(
            teacher_dir, options.student_layers, options.train.dropout
        )
        return model, tokenizer, {"from": "teacher layers", "layers": keep}
    if options.student_layers is not None:
        raise DataError("--student-layers cuts the teacher; it does not apply with --student")
    folder = Path(student)
    if (folder / LABELS_FILE).is_file():
        model, tokenizer, student_labels = load_text_classifier(folder)
        if student_labels != labels:
            raise DataError(
                f"the student {folder} has labels {student_labels}; the teacher's are {labels}"
            )
        return model, tokenizer, {"from": "classifier", "path": str(folder)}
    encoder, tokenizer = load_encoder(student)
    model = TextClassifier(encoder, len(labels), options.train.dropout)
    return model, tokenizer, {"from": "encoder", "path": str(student)}


def _transfer_files(
    paths: Sequence[Path], domain: DomainName
) -> tuple[list[str], list[dict[str, Any]]]:
    texts: list[str] = []
    lineage = []
    for path in map(Path, paths):
        found = read_texts(path, domain=domain)
        texts += found
        source = {"path": str(path.resolve()), "sha256": fingerprint(path)}
        lineage.append({**source, "rows": len(found)})
    return texts, lineage


def distill_model(
    domain: DomainName,
    teacher_dir: Path,
    data: Path,
    unlabeled: Sequence[Path],
    out_dir: Path,
    options: DistillOptions,
    student: Path | str | None = None,
) -> dict:
    """Distil the teacher in ``teacher_dir`` into a student on the labeled ``data`` and the
    texts of the ``unlabeled`` files; write the student folder into ``out_dir`` and return
    its metadata. Raises DataError on labels the teacher lacks, a student whose labels differ
    from the teacher's, or an unlabeled file without a text column."""
    started = time.monotonic()
    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    teacher_meta = read_metadata(teacher_dir)
    if teacher_meta["domain"] != domain:
        raise DataError(f"{teacher_dir} holds a {teacher_meta['domain']} model, not {domain}")
    task = task_of(teacher_dir)
    if task not in TEXT_TASKS:
        raise DataError(f"distillation is for text models; {teacher_dir} is a {task} model")
    train_options = options.train.model_copy(update={"mode": "full"}).resolved(task)
    assert train_options.epochs and train_options.batch_size and train_options.learning_rate
    seed_everything(train_options.seed)
    labels = json.loads((teacher_dir / LABELS_FILE).read_text(encoding="utf-8"))
    taxonomy = None
    if task == "intent_risk":
        taxonomy = RiskTaxonomy.load(teacher_dir / TAXONOMY_FILE)
    # On the teacher's own file, the teacher's split: the student then validates on rows the
    # teacher never trained on, whatever seed or validation file the teacher was given.
    taught = teacher_meta.get("data", {})
    same_data = taught.get("sha256") == fingerprint(Path(data))
    if same_data:
        teacher_validation_file = taught.get("validation", {}).get("path")
        train_options = train_options.model_copy(
            update={
                "seed": taught.get("seed", train_options.seed),
                "validation_fraction": taught.get(
                    "validation_fraction", train_options.validation_fraction
                ),
                "validation_data": teacher_validation_file and Path(teacher_validation_file),
            }
        )
    given = train_options.validation_data
    rows, train_rows, val_rows = split_source(
        read_labeled(task, Path(data), labels, domain),
        None if given is None else read_labeled(task, given, labels, domain),
        train_options.validation_fraction,
        train_options.seed,
    )
    train_data, validation = subset(rows, train_rows), subset(rows, val_rows)
    assert isinstance(train_data, TextData) and isinstance(validation, TextData)
    extra, transfer_lineage = _transfer_files(unlabeled, domain)
    # The split follows the teacher's seed; what the student draws follows its own.
    copies = augmented(train_data.texts, options.augment, options.train.seed)

    # The student first, so that a student that cannot be made fails before minutes of
    # teacher inference.
    model, tokenizer, initialised = _student(teacher_dir, student, labels, options)
    taught_student = distil(
        task, teacher_dir, (model, tokenizer), labels, taxonomy,
        train_data, extra + copies, validation, train_options, options,
        seed=options.train.seed,
    )  # fmt: skip
    model, result = taught_student.model, taught_student.fit
    out_dir.mkdir(parents=True, exist_ok=True)
    save_text_classifier(model, tokenizer, labels, out_dir)
    if taxonomy is not None:
        shutil.copyfile(teacher_dir / TAXONOMY_FILE, out_dir / TAXONOMY_FILE)
    parameters = sum(p.numel() for p in model.parameters())
    metadata = {
        "domain": domain,
        "task": task,
        "kind": "text-classifier",
        "model_name": train_options.model_name or f"{teacher_meta['model_name']}-student",
        "base_model": initialised.get("path") or teacher_meta.get("base_model"),
        "mode": "distilled",
        "data": {
            **data_record(Path(data), train_rows, val_rows, train_data, train_options),
            "same_as_teacher": same_data,
        },
        "options": train_options.model_dump(mode="json"),
        "distillation": {
            **lineage(teacher_dir, taught_student, options),
            "hidden_weight": options.hidden_weight,
            "seed": options.train.seed,  # the batches' and copies'; ``data.seed`` is the split's
            "augment": options.augment,
            "student": {**initialised, "parameters": parameters},
            "transfer": {
                "labeled_rows": len(train_rows),
                "unlabeled_rows": len(extra),
                "augmented_rows": len(copies),
                "files": transfer_lineage,
            },
        },
        "training": fit_record(started, result, train_options.device),
        "metrics": taught_student.metrics,
        "calibration": taught_student.calibration,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": software_versions(),
    }
    write_model_files(out_dir, metadata)
    return metadata


@dataclass
class Distilled:
    model: TextClassifier  # on the CPU, in eval mode
    fit: FitResult
    metrics: dict  # the student's, on the validation rows
    calibration: dict  # models.calibration's record, on the validation rows
    teacher_metrics: dict  # the teacher's, on the same rows
    agreement: float  # share of validation rows where student and teacher pick the same class


def distil(
    task: Task,
    teacher_dir: Path,
    student: tuple[TextClassifier, PreTrainedTokenizerBase],
    labels: list[str],
    taxonomy: RiskTaxonomy | None,
    train_data: TextData,
    extra: list[str],
    validation: TextData,
    train_options: TrainOptions,
    options: DistillOptions,
    seed: int,
) -> Distilled:
    """Train ``student`` on the teacher's softened predictions for ``train_data`` and the
    unlabeled ``extra`` texts, and on ``train_data``'s labels (module docstring), choosing
    the epoch on ``validation``. ``train_options`` is resolved (epochs, rates, batch size);
    ``seed`` orders the batches (``train_options.seed`` may be the teacher's split's)."""
    texts = train_data.texts + extra
    device = resolve_device(train_options.device)
    length = train_options.max_seq_length

    model, tokenizer = student
    teacher, teacher_tokenizer, _ = load_text_classifier(teacher_dir)
    # A narrower student's embedding reaches the teacher's width through a projection.
    projection: nn.Module = nn.Identity()
    if teacher.head.in_features != model.head.in_features:
        projection = nn.Linear(model.head.in_features, teacher.head.in_features)

    # The teacher's view of every transfer text, computed once.
    teacher_engine = TextEngine(teacher, teacher_tokenizer, device, length, 64, "fp32")
    teacher_logits = torch.from_numpy(teacher_engine.predict_logits(texts))
    teacher_embeddings = (
        pooled_embeddings(teacher, teacher_engine, texts) if options.hidden_weight else None
    )
    teacher_validation = teacher_engine.predict_proba(validation.texts)
    teacher_figures = text_metrics(task, teacher_validation, labels, validation.labels, taxonomy)
    del teacher, teacher_engine
    model, projection = model.to(device), projection.to(device)
    if train_options.freeze_embeddings:
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
    engine = TextEngine(model, tokenizer, device, length, 128, "fp32")
    index = {label: i for i, label in enumerate(labels)}
    hard = torch.tensor(
        [index[label] for label in train_data.labels] + [-100] * len(extra), dtype=torch.long
    )
    weights = class_weights(
        [index[label] for label in train_data.labels], len(labels), train_options.class_weight
    )
    ids = tokenizer(texts, truncation=True, max_length=length)["input_ids"]
    rng = random.Random(seed)
    temperature, alpha = options.temperature, options.alpha

    def batches(_: int) -> Iterator[list[int]]:
        yield from length_grouped([len(i) for i in ids], train_options.batch_size or 32, rng)

    def loss(rows: list[int]) -> torch.Tensor:
        batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
        input_ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        pooled = model.embed(input_ids, mask)
        logits = model.head(model.dropout(pooled))
        soft = functional.kl_div(
            functional.log_softmax(logits / temperature, -1),
            functional.softmax(teacher_logits[rows].to(device) / temperature, -1),
            reduction="batchmean",
        ) * (temperature**2)
        target = hard[rows].to(device)
        labeled = target >= 0
        total = alpha * soft
        if labeled.any() and alpha < 1:
            ce = functional.cross_entropy(
                logits[labeled],
                target[labeled],
                weight=None if weights is None else weights.to(device),
                label_smoothing=train_options.label_smoothing,
            )
            total = total + (1 - alpha) * ce
        if teacher_embeddings is not None:
            cosine = functional.cosine_similarity(
                projection(pooled), teacher_embeddings[rows].to(device)
            )
            total = total + options.hidden_weight * (1 - cosine).mean()
        return total

    def validate() -> Validation:
        probabilities = engine.predict_proba(validation.texts)
        return validation_of(task, probabilities, labels, validation.labels, taxonomy)

    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    result = fit(
        model,
        [
            {"params": encoder_params, "lr": train_options.learning_rate},
            {
                "params": [*model.head.parameters(), *projection.parameters()],
                "lr": train_options.head_learning_rate,
            },
        ],
        batches,
        -(-len(texts) // (train_options.batch_size or 32)),
        loss,
        validate,
        epochs=train_options.epochs,
        patience=train_options.patience or train_options.epochs,
        weight_decay=train_options.weight_decay,
        warmup_ratio=train_options.warmup_ratio,
        show_progress=train_options.show_progress,
        description=f"{task} student",
        precision=resolve_precision(device, "auto"),
    )
    model.eval()
    student_validation = engine.predict_proba(validation.texts)
    return Distilled(
        model.cpu(),
        result,
        text_metrics(task, student_validation, labels, validation.labels, taxonomy),
        fit_calibration(student_validation, labels, validation.labels),
        teacher_figures,
        agreement(student_validation, teacher_validation),
    )


def lineage(teacher_dir: Path, taught: Distilled, options: DistillOptions) -> dict[str, Any]:
    """What a student's ``distillation`` metadata says of its teacher and how it learnt: the
    teacher's version (its folder name), name, base and figures, the agreement, T and alpha."""
    teacher = read_metadata(teacher_dir)
    return {
        "teacher": {
            "version": teacher_dir.name,
            "model_name": teacher["model_name"],
            "base_model": teacher.get("base_model"),
            "metrics": taught.teacher_metrics,
        },
        "agreement_with_teacher": taught.agreement,
        "temperature": options.temperature,
        "alpha": options.alpha,
    }


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Share of rows whose top class is the same in two probability (or logit) arrays."""
    return float(np.mean(first.argmax(-1) == second.argmax(-1)))
