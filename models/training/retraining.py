"""One retraining round of a domain: adapt the live model to its feedback, gate, register.

    retrain(domain, registry, labeled, settings, load, request, unlabeled) -> RetrainOutcome

The labels are ordered by when they were given; the most recent ``holdout_fraction`` (at least
``min_holdout``) are held out, so the gate judges the candidate on the data it will meet next, and
the rest train it (``models.training.adaptation``, with replay of the source data). Every candidate
is registered, promoted or not, with the gate's decision and both sets of metrics in its metadata
(``signalyard models show DOMAIN VERSION``).

When the live model is a student with a registered teacher and the mode is full, the round
goes through the teacher (``models.training.teacher_rounds``): ``unlabeled(n)`` gives the domain's
recent unlabeled texts, the teacher is adapted to the same training labels and labels them,
and the student candidate learns from the adapted teacher on labels, replayed source rows
and the texts it kept, both with a round's own learning rate and epochs (``round_options``).
When the student is promoted, its teacher is registered too (never promoted: it serves the
next round, which starts from it).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import AdaptationSettings, DomainName
from models.base import SensorReading
from models.data import FAILURE_MODES, SensorData, TextData
from models.registry import METADATA_FILE, Registry
from models.serving.loading import LoadedScorer
from models.splits import source_validation
from models.tasks import Task, task_of
from models.training.adaptation import AdaptOptions, Teaching, adapt_model
from models.training.evaluation import evaluate_data
from models.training.gate import GateDecision, Metrics, judge
from models.training.teacher_rounds import (
    StreamTransfer,
    round_options,
    stream_transfer,
    teacher_of,
)

FIGURES = ("domain", "model", "version")  # evaluate_data's labels, not metrics


@dataclass(frozen=True)
class LabeledRow:
    """A feedback label joined to what the model saw: the text, or the reading as JSON."""

    event_id: str
    label: str
    input: str


@dataclass(frozen=True)
class RetrainOutcome:
    domain: DomainName
    live_version: str | None
    version: str | None  # the registered candidate; None when none was trained
    promoted: bool
    reason: str
    decision: GateDecision | None = None
    teacher_version: str | None = None  # the adapted teacher registered with a promotion


def labeled_data(task: Task, rows: Sequence[LabeledRow]) -> TextData | SensorData:
    """Feedback rows as training data: texts, or (defect) readings whose label is "none", a
    failure mode, or "failure" (a failure of unknown mode)."""
    if task != "defect":
        return TextData([row.input for row in rows], [row.label for row in rows])
    return SensorData(
        [SensorReading(**json.loads(row.input)) for row in rows],
        [int(row.label != "none") for row in rows],
        [(row.label,) if row.label in FAILURE_MODES else () for row in rows],
    )


def split_recent(count: int, settings: AdaptationSettings) -> tuple[int, int]:
    """(training rows, held-out rows) of ``count`` labels in the order they were given."""
    holdout = max(settings.min_holdout, math.ceil(count * settings.holdout_fraction))
    return max(count - holdout, 0), holdout


def retrain(
    domain: DomainName,
    registry: Registry,
    labeled: Sequence[LabeledRow],
    settings: AdaptationSettings,
    load: Callable[[Path], LoadedScorer],
    request: dict[str, Any],
    unlabeled: Callable[[int], Sequence[str]] = lambda limit: (),
) -> RetrainOutcome:
    """One round (module docstring); ``unlabeled(n)`` reads up to n recent unlabeled texts."""
    live_version = registry.live_version(domain)
    if live_version is None:
        return RetrainOutcome(domain, None, None, False, f"no live {domain} model to adapt")
    training, holdout = split_recent(len(labeled), settings)
    if training < settings.min_holdout:
        return RetrainOutcome(
            domain,
            live_version,
            None,
            False,
            f"too few labels: {len(labeled)} (a candidate needs {2 * settings.min_holdout}: "
            f"{settings.min_holdout} to hold out and as many to train on)",
        )
    live_dir = registry.version_dir(domain, live_version)
    task = task_of(live_dir)
    target = labeled_data(task, labeled[training:])
    train = labeled_data(task, labeled[:training])
    options = AdaptOptions(mode=settings.mode, replay_ratio=settings.replay_ratio)
    teacher = teacher_of(registry, domain, live_version) if settings.mode == "full" else None
    teacher_options, student_options = round_options(options) if teacher else (options, options)
    # Read before minutes of training, so that a store that cannot answer wastes none.
    texts = unlabeled(settings.unlabeled_events) if teacher and settings.unlabeled_events else []
    work = Path(tempfile.mkdtemp(prefix=f"signalyard-adapt-{domain}-"))
    candidate, teacher_dir = work / "candidate", work / "teacher"
    try:
        teaching = None
        if teacher is not None:
            teacher_from = registry.version_dir(domain, teacher)
            _adapt_teacher(domain, teacher_from, train, teacher_options, teacher_dir, request)
            kept, transfer = stream_transfer(
                teacher_dir,
                texts,
                StreamTransfer.of(settings),
                student_options.max_seq_length,
                student_options.device,
            )
            teaching = Teaching(teacher_dir, kept, transfer, settings.student_from)
        metadata = adapt_model(domain, live_dir, train, candidate, student_options, teaching)
        source = source_validation(live_dir)
        decision = judge(
            task,
            _metrics(load(live_dir), target, source),
            _metrics(load(candidate), target, source),
            settings.gate_margin,
            settings.source_tolerance,
        )
        promoted, reason = decision.promote, decision.reason
        if promoted and registry.live_version(domain) != live_version:
            promoted = False
            reason = f"not promoted: the live model changed from {live_version} while it trained"
        teacher_version = None
        if teaching is not None:
            # The adapted teacher is kept for the student that goes live, whose next round
            # starts from it; a refused candidate's teacher is not worth its disk.
            teacher_version = (
                registry.register(domain, teacher_dir, promote=False) if promoted else None
            )
            metadata["distillation"]["teacher"]["version"] = teacher_version
        metadata["adaptation"] = {
            **metadata.get("adaptation", {}),
            "request": request,
            "labels": {"train": training, "holdout": holdout},
            "gate": decision.to_json(),
        }
        (candidate / METADATA_FILE).write_text(json.dumps(metadata, indent=2), "utf-8")
        version = registry.register(domain, candidate, promote=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if promoted:
        registry.promote(domain, version)
    return RetrainOutcome(
        domain, live_version, version, promoted, reason, decision, teacher_version
    )


def _adapt_teacher(
    domain: DomainName,
    teacher_dir: Path,
    train: TextData | SensorData,
    options: AdaptOptions,
    out_dir: Path,
    request: dict[str, Any],
) -> None:
    """Adapt the teacher to the round's training labels into ``out_dir``, marked a teacher."""
    metadata = adapt_model(domain, teacher_dir, train, out_dir, options)
    metadata["role"] = "teacher"
    metadata["adaptation"] = {**metadata["adaptation"], "request": request}
    (out_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2), "utf-8")


def _metrics(
    scorer: LoadedScorer, target: TextData | SensorData, source: TextData | SensorData | None
) -> Metrics:
    def figures(data: TextData | SensorData) -> dict[str, Any]:
        return {k: v for k, v in evaluate_data(scorer, data).items() if k not in FIGURES}

    return Metrics(figures(target), None if source is None else figures(source))
