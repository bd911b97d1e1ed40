"""Adapting a live model to its stream's own domain with labeled feedback.

    from models.training.adaptation import AdaptOptions, adapt_model

    adapt_model(domain: DomainName, live_dir: Path, labeled: TextData | SensorData, out_dir: Path,
                options: AdaptOptions, teaching: Teaching | None = None) -> dict

``adapt_model`` fine-tunes the live model's own weights (not the base encoder) on the labeled
target rows, mixed with a seeded sample of the rows the live model was trained on ("replay",
``replay_ratio`` source rows per target row) so that it does not forget the source domain.
A seeded share of the target rows is held out for early stopping and for the figures in
``metrics.json``. The result is a complete model folder for ``Registry.register``; its
metadata names the version it came from (``adapted_from``) and keeps ``data`` pointing at the
original source file and split, so that ``models.splits.source_validation`` of any descendant
returns the same source rows and every later adaptation replays the same source.

With ``teaching`` (a text model with a teacher, ``models.training.teacher_rounds``), the live model
is a student and learns by distillation instead (``models.training.distillation.distil``): the
teacher's softened predictions on the same target and replayed rows, mixed with their labels, and on
the teacher-labeled stream texts alone. Its metadata names the teacher it learnt from.

Sensors: the defect model is gradient-boosted trees, which train in seconds, so a round
trains them afresh on the labeled target rows together with every source training row, with
the same cross-validated selection of rounds and threshold as ``signalyard train``
(``models.training.train_defect``). Trees are local: target readings in a region the source never
covered decide that region, while the source rows keep the rest from being forgotten; and
the threshold is chosen out of fold over all those rows, since a few dozen target rows rarely
hold enough failures on their own. Without the source data (its file gone or changed), the
target rows train alone, and a round whose rows hold fewer than two failures is refused
(DataError) instead of replacing the live model with one that never saw a failure.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from transformers import PreTrainedTokenizerBase

from config.settings import DomainName
from models.data import SensorData, TextData
from models.errors import DataError
from models.registry import read_metadata
from models.sensor_model import save_sensor_model
from models.serving.quantization import PLAN_KEYS
from models.splits import (
    concat,
    label_counts,
    read_source,
    source_split,
    split_indices,
    strata,
    subset,
)
from models.tasks import LABELS_FILE, TAXONOMY_FILE, Task, task_of
from models.taxonomy import RiskTaxonomy
from models.text_model import (
    TextClassifier,
    load_text_classifier,
    save_text_classifier,
)
from models.training.fitting import FitResult, seed_everything
from models.training.options import TrainOptions
from models.training.trainer import fit_record, software_versions, write_model_files

__all__ = ["AdaptOptions", "Teaching", "adapt_model"]

# Early stopping on fewer held-out rows than this follows noise; smaller labeled sets train
# for all epochs on every row instead.
MIN_VALIDATION_ROWS = 10

# Unset options take these values. The full-mode ones are the better of the two settings
# tried in benchmarks/bench_adaptation.py (fpb -> tweets): against a lower rate, fewer epochs
# and more replayed rows, they gain more on tweets than they lose on fpb, and stay within the
# fpb loss allowed (figures: benchmarks/RESULTS.md).
_TEXT_DEFAULTS: dict[str, dict[str, float | int]] = {
    "full": {"epochs": 4, "learning_rate": 1e-4, "head_learning_rate": 5e-4, "patience": 2},
    "lora": {"epochs": 4, "learning_rate": 3e-4, "head_learning_rate": 1e-4, "patience": 2},
    "head": {"epochs": 100, "learning_rate": 3e-3, "head_learning_rate": 3e-3, "patience": 10},
}


class AdaptOptions(BaseModel):
    """How to adapt. ``None`` means the default for the domain and mode (see ``resolved``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["full", "lora", "head"] = "full"  # text domains; lora or head: fewer weights
    epochs: int | None = Field(default=None, gt=0)
    learning_rate: float | None = Field(default=None, gt=0)
    head_learning_rate: float | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    replay_ratio: float = Field(default=0.5, ge=0)  # source rows per target row; 0: no replay
    max_seq_length: int = Field(default=64, gt=0)
    seed: int = 13
    validation_fraction: float = Field(default=0.15, ge=0, lt=1)  # of the target rows
    patience: int | None = Field(default=None, gt=0)
    # None keeps the live model's; a target domain's own imbalance may call for another.
    class_weight: Literal["none", "sqrt", "balanced"] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    show_progress: bool = False

    def resolved(self, task: Task) -> AdaptOptions:
        """Text: the mode's defaults. Trees: unset options keep the live model's own."""
        defaults = {} if task == "defect" else {"batch_size": 32, **_TEXT_DEFAULTS[self.mode]}
        return self.filled(defaults)

    def filled(self, defaults: Mapping[str, float | int]) -> AdaptOptions:
        """These options with each of ``defaults`` that is unset (None) here set to its value."""
        unset = {key: value for key, value in defaults.items() if getattr(self, key) is None}
        return self.model_copy(update=unset)


@dataclass(frozen=True)
class Teaching:
    """A teacher for an adaptation round (see the module's doc)."""

    teacher_dir: Path  # the teacher, already adapted to the same labels
    texts: list[str]  # unlabeled target texts the student learns the teacher's view of
    transfer: dict[str, Any]  # how those texts were chosen, for the metadata
    # "live": the live student learns on; "teacher": the adapted teacher cut to as many
    # layers as the live student has starts afresh, where that cut has the live student's
    # architecture (else the live student learns on, and its metadata says why). No default
    # here: the settings' ``adaptation.student_from`` is the one.
    student_from: Literal["live", "teacher"]


def _train_options(live: dict[str, Any], options: AdaptOptions) -> TrainOptions:
    """The live model's training options (class weights, dropout, LoRA rank...) with this
    adaptation's schedule; fields an older model lacks or a newer one adds are left out."""
    inherited = {k: v for k, v in live.get("options", {}).items() if k in TrainOptions.model_fields}
    adapted = options.model_dump(include=set(TrainOptions.model_fields), exclude_none=True)
    return TrainOptions.model_validate({**inherited, **adapted})


def _check_labels(task: Task, labeled: TextData | SensorData, live_dir: Path) -> None:
    if task == "defect":
        if not isinstance(labeled, SensorData):
            raise DataError("a defect model is adapted with SensorData")
        return
    if not isinstance(labeled, TextData):
        raise DataError(f"a {task} model is adapted with TextData")
    labels = json.loads((live_dir / LABELS_FILE).read_text(encoding="utf-8"))
    unknown = sorted(set(labeled.labels) - set(labels))
    if unknown:
        raise DataError(f"labels the {task} model does not know: {', '.join(unknown)}")


def _live_text_model(
    task: Task, live_dir: Path, train_options: TrainOptions, out_dir: Path
) -> tuple[TextClassifier, PreTrainedTokenizerBase, list[str], RiskTaxonomy | None]:
    """The live classifier to train on, its labels and (intent_risk) its taxonomy, which the
    adapted folder keeps too."""
    model, tokenizer, labels = load_text_classifier(live_dir)
    model.dropout.p = train_options.dropout
    taxonomy = None
    if task == "intent_risk":
        taxonomy = RiskTaxonomy.load(live_dir / TAXONOMY_FILE)
        shutil.copyfile(live_dir / TAXONOMY_FILE, out_dir / TAXONOMY_FILE)
    return model, tokenizer, labels, taxonomy


def _fine_tune_text(
    task: Task,
    live_dir: Path,
    train: TextData,
    validation: TextData,
    train_options: TrainOptions,
    out_dir: Path,
) -> tuple[FitResult, dict, dict]:
    """The fit, the figures on ``validation`` and the calibration fitted on it."""
    from models.training.train_text import train_text

    model, tokenizer, labels, taxonomy = _live_text_model(task, live_dir, train_options, out_dir)
    trained = train_text(
        task, train, validation, labels, taxonomy, train_options, start=(model, tokenizer)
    )
    save_text_classifier(trained.model, trained.tokenizer, labels, out_dir)
    return trained.fit, trained.metrics, trained.calibration


def _distil_text(
    task: Task,
    live_dir: Path,
    train: TextData,
    validation: TextData,
    train_options: TrainOptions,
    out_dir: Path,
    teaching: Teaching,
    first: dict[str, Any],
) -> tuple[FitResult, dict, dict, dict]:
    """As ``_fine_tune_text``, by distillation with the softening and mix the student was
    first distilled with (``first``, its ``distillation`` metadata); also returns the
    metadata's new ``distillation``."""
    from models.training.distillation import DistillOptions, distil, lineage, teacher_cut

    model, tokenizer, labels, taxonomy = _live_text_model(task, live_dir, train_options, out_dir)
    student: dict[str, Any] = {"from": "live", "version": live_dir.name}
    if teaching.student_from == "teacher":
        layers = len(getattr(getattr(model.encoder, "encoder", None), "layer", ()))
        cut, cut_tokenizer, keep = teacher_cut(teaching.teacher_dir, layers, train_options.dropout)
        if _shapes(cut) == _shapes(model):
            model, tokenizer = cut, cut_tokenizer
            student = {"from": "teacher layers", "layers": keep}
        else:
            # A student of another architecture (distil --student) cannot be cut from its
            # teacher; it learns on, so that the default serves every student, and says why.
            student["why"] = f"not its teacher cut to {layers} layers"
    defaults = DistillOptions()
    options = DistillOptions(
        temperature=first.get("temperature", defaults.temperature),
        alpha=first.get("alpha", defaults.alpha),
    )
    taught = distil(
        task, teaching.teacher_dir, (model, tokenizer), labels, taxonomy,
        train, teaching.texts, validation, train_options, options, seed=train_options.seed,
    )  # fmt: skip
    save_text_classifier(taught.model, tokenizer, labels, out_dir)
    record = {
        **lineage(teaching.teacher_dir, taught, options),
        "student": student,
        "transfer": {"labeled_rows": len(train.texts), "stream": teaching.transfer},
    }
    return taught.fit, taught.metrics, taught.calibration, record


def _shapes(model: TextClassifier) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _retrain_defect(
    train: SensorData, target_validation: SensorData, train_options: TrainOptions, out_dir: Path
) -> tuple[FitResult, dict, dict]:
    """Train the defect model on ``train`` (target and source rows); return the fit, the
    figures on the held-out target rows and the cross-validation figures."""
    from models.training.train_defect import sensor_validation_metrics, train_defect

    model, fit = train_defect(train, train_options)
    save_sensor_model(model, out_dir)
    return fit, sensor_validation_metrics(model, target_validation), model.cross_validation


def adapt_model(
    domain: DomainName,
    live_dir: Path,
    labeled: TextData | SensorData,
    out_dir: Path,
    options: AdaptOptions,
    teaching: Teaching | None = None,
) -> dict:
    """Adapt the model in ``live_dir`` to ``labeled`` target rows, learning from
    ``teaching``'s teacher when given; write the adapted model folder into ``out_dir`` and
    return its metadata (also in ``out_dir/metadata.json``)."""
    started = time.monotonic()
    live_dir, out_dir = Path(live_dir), Path(out_dir)
    live = read_metadata(live_dir)
    if live["domain"] != domain:
        raise DataError(f"{live_dir} holds a {live['domain']} model, not a {domain} model")
    task = task_of(live_dir)
    options = options.resolved(task)
    _check_labels(task, labeled, live_dir)
    if not strata(labeled):
        raise DataError("no labeled rows to adapt to")
    seed_everything(options.seed)

    held_out = int(len(strata(labeled)) * options.validation_fraction) >= MIN_VALIDATION_ROWS
    if held_out:
        train_rows, validation_rows = split_indices(
            strata(labeled), options.validation_fraction, options.seed
        )
    else:
        train_rows, validation_rows = list(range(len(strata(labeled)))), []
    target_train = subset(labeled, train_rows)
    # Without held-out rows the figures come from the training rows, and no early stopping.
    target_validation = subset(labeled, validation_rows) if held_out else target_train
    train_options = _train_options(live, options)
    if not held_out and task != "defect":
        train_options = train_options.model_copy(update={"patience": options.epochs})

    source = read_source(live_dir, live)
    replay: dict[str, Any] = {"rows": 0, "ratio": options.replay_ratio}
    train = target_train
    if isinstance(source, str):
        replay["skipped"] = source
    elif options.replay_ratio > 0 or task == "defect":
        source_data, source_train_rows, _ = source
        wanted = min(round(options.replay_ratio * len(train_rows)), len(source_train_rows))
        if task == "defect":  # trees are retrained on the union (see the module's doc)
            wanted = len(source_train_rows)
        replayed = subset(
            source_data, sorted(random.Random(options.seed).sample(source_train_rows, wanted))
        )
        train = concat(target_train, replayed)
        replay.update(rows=wanted, label_counts=label_counts(replayed))

    out_dir.mkdir(parents=True, exist_ok=True)
    adaptation: dict[str, Any] = {
        "options": options.model_dump(mode="json"),
        "metrics_on": "target validation rows" if held_out else "target training rows",
    }
    extra: dict[str, Any] = {}  # calibration and distillation records, where there are some
    if task == "defect":
        assert isinstance(train, SensorData) and isinstance(target_validation, SensorData)
        fit, metrics, adaptation["cross_validation"] = _retrain_defect(
            train, target_validation, train_options, out_dir
        )
    else:
        assert isinstance(train, TextData) and isinstance(target_validation, TextData)
        if teaching is None:
            fit, metrics, extra["calibration"] = _fine_tune_text(
                task, live_dir, train, target_validation, train_options, out_dir
            )
            if "distillation" in live:  # still the same student: its teacher stays its own
                extra["distillation"] = {**live["distillation"], "carried_from": live_dir.name}
        else:
            fit, metrics, extra["calibration"], extra["distillation"] = _distil_text(
                task, live_dir, train, target_validation, train_options, out_dir, teaching,
                live.get("distillation", {}),
            )  # fmt: skip
        if not held_out:
            # A temperature fitted on the rows just trained on is too low and their accuracy
            # too high: the live model's record stands in, or none.
            extra.pop("calibration")
            if live.get("calibration"):
                extra["calibration"] = {**live["calibration"], "carried_from": live_dir.name}
        for plan in PLAN_KEYS.values():
            if plan in live:
                # Same layers, so the same few carry outlier features: under an int8 precision
                # the gate judges the candidate as it would serve. `models quantize` refits.
                extra[plan] = {**live[plan], "carried_from": live_dir.name}

    seed, fraction = source_split(live)
    metadata = {
        "domain": domain,
        "task": task,
        "kind": live["kind"],
        "model_name": live["model_name"],
        "base_model": live.get("base_model"),
        "mode": options.mode if task != "defect" else "full",
        "adapted_from": live_dir.name,
        "data": {
            **live.get("data", {}),
            "seed": seed,
            "validation_fraction": fraction,
            "label_counts": label_counts(train),
            "target": {
                "rows": len(train_rows) + len(validation_rows),
                "train_rows": len(train_rows),
                "validation_rows": len(validation_rows),
                "label_counts": label_counts(target_train),
            },
            "replay": replay,
        },
        # The training options in effect, except that seed and validation_fraction keep
        # naming the source split; the adaptation's own are under "adaptation".
        "options": {
            **train_options.model_dump(mode="json"),
            "seed": seed,
            "validation_fraction": fraction,
        },
        "adaptation": adaptation,
        "training": fit_record(started, fit, options.device),
        "metrics": metrics,
        **extra,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": software_versions(),
    }
    write_model_files(out_dir, metadata)
    return metadata
