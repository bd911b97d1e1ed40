"""Evaluating a model on labeled rows of its domain, with the figures of
``models.training.metrics``; calibrating a model folder trained before calibration was recorded;
fitting its int8 plan."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.calibration import decision_confidence, fit_calibration
from models.data import SENTIMENT_LABELS, SensorData, TextData, read_readings, read_text
from models.errors import DataError
from models.registry import METADATA_FILE, read_metadata, write_json_atomic
from models.serving.inference import TextEngine
from models.serving.loading import LoadedScorer, load_scorer
from models.serving.onnx_runtime import OnnxClassifier, int8_scheme
from models.serving.quantization import PLAN_KEYS, SCHEME, Quantizer, fit_int8_plan, quantize_int8
from models.serving.scorers import SensorScorer, SentimentScorer, TicketScorer
from models.splits import source_validation
from models.tasks import TEXT_TASKS, task_of
from models.text_model import TextClassifier, load_text_classifier
from models.training.metrics import sensor_figures, sentiment_metrics, ticket_metrics


def evaluate(scorer: LoadedScorer, data: Path) -> dict:
    """The scorer's figures on the labeled CSV at ``data`` (see ``evaluate_data``)."""
    if isinstance(scorer, SensorScorer):
        return evaluate_data(scorer, read_readings(data))
    labels = scorer.taxonomy.intents if isinstance(scorer, TicketScorer) else SENTIMENT_LABELS
    return evaluate_data(scorer, read_text(data, scorer.task, tuple(labels), scorer.domain))


def evaluate_data(scorer: LoadedScorer, data: TextData | SensorData) -> dict:
    """The scorer's figures on ``data`` (news: accuracy, macro_f1; tickets: intent_accuracy,
    risk_macro_f1; sensors: f1, precision, recall, roc_auc and the failure-mode figures),
    plus model name and version. Text domains add ``estimated_accuracy``: the mean calibrated
    confidence, the label-free estimate of accuracy (``models.calibration``)."""
    if isinstance(scorer, SensorScorer):
        if not isinstance(data, SensorData):
            raise TypeError("a defect model is evaluated on SensorData")
        failure, modes = scorer.predict_proba(data.readings)
        metrics = sensor_figures(failure, modes, scorer.engine.threshold, data)
    elif not isinstance(data, TextData):
        raise TypeError(f"a {scorer.domain} model is evaluated on TextData")
    else:
        probabilities = scorer.predict_proba(data.texts)
        if isinstance(scorer, TicketScorer):
            metrics = ticket_metrics(probabilities, scorer.labels, data.labels, scorer.taxonomy)
        else:
            assert isinstance(scorer, SentimentScorer)
            metrics = sentiment_metrics(probabilities, SENTIMENT_LABELS, data.labels)
        confidence = decision_confidence(probabilities, scorer.calibration.temperature)
        metrics["estimated_accuracy"] = float(confidence.mean()) if len(confidence) else None
    return {
        "domain": scorer.domain,
        "model": scorer.model_name,
        "version": scorer.version,
        **metrics,
    }


def _text_validation(model_dir: Path, what: str) -> tuple[dict[str, Any], TextData, int]:
    """A text model folder's metadata, source validation rows and sequence length; ``what``
    names the record being fitted, for the errors. Raises DataError for a model of trees or
    when the source data is gone or changed."""
    metadata = read_metadata(model_dir)
    task = task_of(model_dir)
    if task not in TEXT_TASKS:
        raise DataError(f"{what} is for text models; {model_dir} is a {task} model")
    validation = source_validation(model_dir)
    if not isinstance(validation, TextData):
        raise DataError(f"the source data of {model_dir} is gone or changed")
    return metadata, validation, metadata.get("options", {}).get("max_seq_length", 128)


def calibrate_folder(model_dir: Path) -> dict[str, Any]:
    """Fit the calibration of a text model folder on its source validation split (the rows
    ``models.training.adaptation.source_validation`` gives) and record it in its ``metadata.json``;
    return the record. For models trained before training recorded one. Raises DataError
    for a sensors model, a model that has a record, or when the source data is gone or
    changed."""
    metadata, validation, length = _text_validation(model_dir, "calibration")
    if "calibration" in metadata:
        raise DataError(f"{model_dir} was calibrated when it was trained")
    # Fitted on the model's own probabilities, whatever a machine will serve it in.
    scorer = load_scorer(model_dir, "auto", length, "fp32")
    assert not isinstance(scorer, SensorScorer)
    labels = SENTIMENT_LABELS if isinstance(scorer, SentimentScorer) else scorer.labels
    record = fit_calibration(scorer.predict_proba(validation.texts), labels, validation.labels)
    record["fitted_after_training"] = True
    write_json_atomic(Path(model_dir) / METADATA_FILE, {**metadata, "calibration": record})
    return record


def _onnx_int8(model: nn.Module, keep_fp32: Collection[str]) -> OnnxClassifier:
    assert isinstance(model, TextClassifier)
    return OnnxClassifier(model, True, torch.get_num_threads(), keep_fp32)


def _quantizers() -> dict[str, tuple[Quantizer, str]]:
    """Each int8 runtime's quantizer and scheme, on this CPU; keyed as ``PLAN_KEYS``."""
    return {
        "int8": (quantize_int8, SCHEME),
        "onnx-int8": (_onnx_int8, int8_scheme()),
    }


def quantize_folder(
    model_dir: Path, max_changed: float = 0.005, show_progress: bool = False, runtime: str = "int8"
) -> dict[str, Any]:
    """Fit the int8 plan of a text model folder for ``runtime`` (``"int8"``: torch,
    ``"onnx-int8"``: ONNX Runtime) on its source validation split (which linear layers stay
    fp32 so that int8 changes at most ``max_changed`` of the decisions there; see
    ``models.serving.quantization``) and record it in its ``metadata.json``, replacing an older
    plan for that runtime; return the record. Raises DataError for a sensors model, when the
    source data is gone or changed, or when no plan within ``max_changed`` exists; ValueError
    for another runtime."""
    quantizers = _quantizers()
    if runtime not in quantizers:
        raise ValueError(f"no int8 plan for runtime {runtime!r}; one of {', '.join(quantizers)}")
    quantize, scheme = quantizers[runtime]
    metadata, validation, length = _text_validation(model_dir, "an int8 plan")
    model, tokenizer, labels = load_text_classifier(model_dir)
    # The serving batch size, so the recorded rates compare with the pipeline's.
    engine = TextEngine(model, tokenizer, "cpu", length, 32, "fp32")

    def logits(candidate: nn.Module | OnnxClassifier, texts: Sequence[str]) -> np.ndarray:
        engine.model = candidate  # the same tokenization and batches for every candidate
        return engine.predict_logits(texts)

    record = fit_int8_plan(
        model.eval(),
        logits,
        validation.texts,
        validation.labels,
        labels,
        max_changed,
        show_progress=show_progress,
        quantize=quantize,
        scheme=scheme,
    )
    record = {"runtime": runtime, **record}
    write_json_atomic(Path(model_dir) / METADATA_FILE, {**metadata, PLAN_KEYS[runtime]: record})
    return record
