"""The teacher's part in an adaptation round: which teacher, and what it teaches from the stream.

    from models.training.teacher_rounds import (
        StreamTransfer, round_options, select_confident, stream_transfer, teacher_of,
    )

    teacher_of(registry: Registry, domain: DomainName, version: str) -> str | None
    round_options(options: AdaptOptions) -> tuple[AdaptOptions, AdaptOptions]
    select_confident(confidence: np.ndarray (n,), predicted: list[str], threshold: float,
                     class_cap: int) -> list[int]
    stream_transfer(teacher_dir: Path, texts: Sequence[str], transfer: StreamTransfer,
                    max_seq_length: int = 64, device: str = "auto") -> tuple[list[str], dict]

A live text model distilled from a teacher (``signalyard distill``, or an earlier round) names that
teacher in ``metadata.distillation.teacher.version``. A round then adapts the teacher to the
feedback labels first (``models.training.adaptation``, with source replay) and lets the adapted
teacher label the domain's recent *unlabeled* events (``models.training.retraining`` registers it
with a promoted student, whose next round starts from it): those whose calibrated confidence
(``models.calibration``) reaches ``threshold`` are kept, at most ``class_cap`` per predicted class,
the most confident first, so that the majority class does not swamp the rest (the
confidence-thresholded, class-balanced pseudo-labels of self-training, e.g. Xie et al.'s Noisy
Student, 2020). The student then learns the teacher's softened predictions on them (``Teaching``),
starting from the adapted teacher cut to the live student's layers (``student_from = "teacher"``,
the default, which was ahead of learning on from the live student on the adaptation benchmark's
development split) or from the live student. A threshold of 0 keeps every event, softened
predictions and all; on that development split it did worse than 0.9, so the settings' default keeps
the threshold (figures in docs/adaptation.md and benchmarks/RESULTS.md).

A round's learning rate and epochs (``round_options``) are their own, not the direct
adaptation's (``models.training.adaptation``), as measured by ``benchmarks/bench_adaptation.py``
(fpb -> tweets): at 5e-5 every student's best epoch on its round's validation labels was its
first, so both learn at 3e-5; at 3 epochs every teacher's best was its last, so the teacher
gets 5.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from config.settings import AdaptationSettings, DomainName
from models.calibration import Calibration, decision_confidence
from models.registry import Registry, read_metadata
from models.serving.inference import TextEngine, resolve_device
from models.tasks import LABELS_FILE
from models.text_model import load_text_classifier
from models.training.adaptation import AdaptOptions

__all__ = ["StreamTransfer", "round_options", "select_confident", "stream_transfer", "teacher_of"]

# A round through a teacher: what AdaptOptions leaves unset (see the module's doc).
TEACHER_DEFAULTS: Mapping[str, float | int] = MappingProxyType({"epochs": 5, "learning_rate": 3e-5})
STUDENT_DEFAULTS: Mapping[str, float | int] = MappingProxyType({"epochs": 3, "learning_rate": 3e-5})


class StreamTransfer(BaseModel):
    """Which unlabeled stream events become transfer texts (``[adaptation]`` ``unlabeled_*``
    in the settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: int = Field(ge=0)  # the most recent unlabeled events read
    threshold: float = Field(ge=0, le=1)  # calibrated confidence to keep one
    class_cap: int = Field(gt=0)  # kept texts per predicted class, at most

    @classmethod
    def of(cls, settings: AdaptationSettings) -> StreamTransfer:
        return cls(
            events=settings.unlabeled_events,
            threshold=settings.unlabeled_threshold,
            class_cap=settings.unlabeled_class_cap,
        )


def teacher_of(registry: Registry, domain: DomainName, version: str) -> str | None:
    """The registered teacher the version was distilled from; None when it has none (or the
    teacher's folder is gone)."""
    metadata = registry.metadata(domain, version)
    teacher = metadata.get("distillation", {}).get("teacher", {}).get("version")
    if teacher is None or not (registry.version_dir(domain, teacher) / LABELS_FILE).is_file():
        return None
    return str(teacher)


def round_options(options: AdaptOptions) -> tuple[AdaptOptions, AdaptOptions]:
    """(the teacher's, the student's) options for a round through a teacher: ``options``
    with its unset (None) epochs and learning rate taken from the round's defaults."""
    return options.filled(TEACHER_DEFAULTS), options.filled(STUDENT_DEFAULTS)


def select_confident(
    confidence: np.ndarray, predicted: Sequence[str], threshold: float, class_cap: int
) -> list[int]:
    """Rows (ascending) whose confidence reaches ``threshold``, keeping at most ``class_cap``
    of each predicted class: the most confident, ties in row order."""
    by_class: dict[str, list[int]] = {}
    for row in np.argsort(-np.asarray(confidence), kind="stable"):
        if confidence[row] < threshold:
            break
        kept = by_class.setdefault(predicted[row], [])
        if len(kept) < class_cap:
            kept.append(int(row))
    return sorted(row for rows in by_class.values() for row in rows)


def stream_transfer(
    teacher_dir: Path,
    texts: Sequence[str],
    transfer: StreamTransfer,
    max_seq_length: int = 64,
    device: str = "auto",
) -> tuple[list[str], dict[str, Any]]:
    """The texts the teacher in ``teacher_dir`` is confident about, and the record of how
    they were chosen (threshold, cap, counts read and kept, kept per class)."""
    record: dict[str, Any] = {
        "events_requested": transfer.events,
        "events_read": len(texts),
        "threshold": transfer.threshold,
        "class_cap": transfer.class_cap,
        "kept": 0,
        "label_counts": {},
    }
    if not texts:
        return [], record
    model, tokenizer, labels = load_text_classifier(teacher_dir)
    engine = TextEngine(model, tokenizer, resolve_device(device), max_seq_length, 64, "fp32")
    probabilities = engine.predict_proba(list(texts))
    temperature = Calibration.of(read_metadata(teacher_dir)).temperature
    confidence = decision_confidence(probabilities, temperature)
    predicted = [labels[i] for i in probabilities.argmax(-1)]
    kept = select_confident(confidence, predicted, transfer.threshold, transfer.class_cap)
    record.update(
        kept=len(kept),
        label_counts=dict(sorted(Counter(predicted[i] for i in kept).items())),
        mean_confidence_kept=float(confidence[kept].mean()) if kept else None,
    )
    return [texts[i] for i in kept], record
