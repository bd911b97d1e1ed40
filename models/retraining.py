"""One retraining round of a domain: adapt the live model to its feedback, gate, register.

    retrain(domain, registry, labeled, settings, load, request, unlabeled) -> RetrainOutcome

The labels are ordered by when they were given; the most recent ``holdout_fraction`` (at least
``min_holdout``) are held out, so the gate judges the candidate on the data it will meet next,
and the rest train it (``models.adaptation``, with replay of the source data). Every candidate
is registered, promoted or not, with the gate's decision and both sets of metrics in its
metadata (``signalyard models show DOMAIN VERSION``).

When the live model is a student with a registered teacher and the mode is full, the round
goes through the teacher (``models.teacher_rounds``): the teacher is adapted to the same
training labels and registered (never promoted: it serves the next round), ``unlabeled()``
gives the domain's recent unlabeled texts for it to label, and the student candidate learns
from the adapted teacher on labels, replayed source rows and the texts it kept.
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

from models.adaptation import AdaptOptions, Teaching, adapt_model, source_validation
from models.base import SensorReading
from models.data import FAILURE_MODES, SensorData, TextData
from models.evaluation import evaluate_data
from models.gate import GateDecision, Metrics, judge
from models.loading import LoadedScorer
from models.registry import METADATA_FILE, Registry
from models.teacher_rounds import StreamTransfer, stream_transfer, teacher_of
from signalyard.settings import AdaptationSettings, Domain

FIGURES = ("domain", "model", "version")  # evaluate_data's labels, not metrics


@dataclass(frozen=True)
class LabeledRow:
    """A feedback label joined to what the model saw: the text, or the reading as JSON."""

    event_id: str
    label: str
    input: str


@dataclass(frozen=True)
class RetrainOutcome:
    domain: Domain
    live_version: str | None
    version: str | None  # the registered candidate; None when none was trained
    promoted: bool
    reason: str
    decision: GateDecision | None = None
    teacher_version: str | None = None  # the adapted teacher registered by this round


def labeled_data(domain: Domain, rows: Sequence[LabeledRow]) -> TextData | SensorData:
    """Feedback rows as training data: texts, or readings whose label is "none", a failure
    mode, or "failure" (a failure of unknown mode)."""
    if domain != "sensors":
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
    domain: Domain,
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
    target = labeled_data(domain, labeled[training:])
    train = labeled_data(domain, labeled[:training])
    options = AdaptOptions(mode=settings.mode, replay_ratio=settings.replay_ratio)
    teacher = teacher_of(registry, domain, live_version) if settings.mode == "full" else None
    teaching, teacher_version = None, None
    if teacher is not None:
        teacher_version = _adapt_teacher(domain, registry, teacher, train, options, request)
        texts, transfer = stream_transfer(
            registry.version_dir(domain, teacher_version),
            unlabeled(settings.unlabeled_events) if settings.unlabeled_events else [],
            StreamTransfer.of(settings),
            options.max_seq_length,
        )
        teaching = Teaching(registry.version_dir(domain, teacher_version), texts, transfer)
    staging = Path(tempfile.mkdtemp(prefix=f"signalyard-adapt-{domain}-"))
    try:
        metadata = adapt_model(domain, live_dir, train, staging, options, teaching)
        source = source_validation(live_dir)
        decision = judge(
            domain,
            _metrics(load(live_dir), target, source),
            _metrics(load(staging), target, source),
            settings.gate_margin,
            settings.source_tolerance,
        )
        metadata["adaptation"] = {
            **metadata.get("adaptation", {}),
            "request": request,
            "labels": {"train": training, "holdout": holdout},
            "gate": decision.to_json(),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2), "utf-8")
        version = registry.register(domain, staging, promote=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    promoted, reason = decision.promote, decision.reason
    if promoted and registry.live_version(domain) != live_version:
        promoted = False
        reason = f"not promoted: the live model changed from {live_version} while {version} trained"
    if promoted:
        registry.promote(domain, version)
    return RetrainOutcome(
        domain, live_version, version, promoted, reason, decision, teacher_version
    )


def _adapt_teacher(
    domain: Domain,
    registry: Registry,
    teacher: str,
    train: TextData | SensorData,
    options: AdaptOptions,
    request: dict[str, Any],
) -> str:
    """Adapt the teacher to the round's training labels; register it, unpromoted."""
    staging = Path(tempfile.mkdtemp(prefix=f"signalyard-teacher-{domain}-"))
    try:
        metadata = adapt_model(
            domain, registry.version_dir(domain, teacher), train, staging, options
        )
        metadata["role"] = "teacher"
        metadata["adaptation"] = {**metadata["adaptation"], "request": request}
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2), "utf-8")
        return registry.register(domain, staging, promote=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _metrics(
    scorer: LoadedScorer, target: TextData | SensorData, source: TextData | SensorData | None
) -> Metrics:
    def figures(data: TextData | SensorData) -> dict[str, Any]:
        return {k: v for k, v in evaluate_data(scorer, data).items() if k not in FIGURES}

    return Metrics(figures(target), None if source is None else figures(source))
