"""A text model folder as a ready scorer: its runtime chosen (``precision``, ``auto`` included),
its int8 plan for that runtime applied, its labels and calibration read.

Only :mod:`models.serving.loading` imports this module, and only when it loads a text model:
with it come torch, transformers and ONNX Runtime, most of a worker's memory and start-up,
which a worker that scores sensors alone does without.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.calibration import Calibration
from models.data import TextData
from models.errors import ModelNotFoundError
from models.serving.cpu_features import cpu_flags
from models.serving.inference import TextEngine, resolve_device
from models.serving.onnx_runtime import CompiledModels, int8_scheme
from models.serving.precision_choice import MAX_ROWS, Choices, choose, describe
from models.serving.quantization import UnknownLayersError, kept_fp32, plan_of
from models.serving.scorers import SentimentScorer, TicketScorer
from models.splits import source_validation
from models.tasks import TAXONOMY_FILE, Task
from models.taxonomy import RiskTaxonomy
from models.text_model import load_text_classifier

log = logging.getLogger(__name__)


def load_text_scorer(
    model_dir: Path,
    metadata: dict[str, Any],
    task: Task,
    device: str,
    max_seq_length: int,
    precision: str,
    batch_size: int,
    max_decision_change: float,
    choices: Path | None,
    digest: str,
    threads: int,
    compiled: Path | None,
) -> SentimentScorer | TicketScorer:
    """The text model in ``model_dir`` (``metadata`` read from it, ``digest`` its verified
    content hash), as :func:`models.serving.loading.load_scorer` describes. ``threads`` sets
    torch's threads first (0 leaves torch's default, one per core): for the calling thread and
    every thread that first runs torch after it (threads already running torch keep their
    count); each ONNX Runtime session made later takes as many. ``compiled``: the folder where
    the ONNX runtimes keep what they build for the model (``CompiledModels``), or None.

    An event's scores depend on the threads as well as on its batch: matrix kernels split their
    sums by thread, so a worker, a replay and a backtest that ran with different counts would
    store different scores for one event. Every process that loads a model through the settings
    therefore passes the same count. Raises ModelNotFoundError when the model's int8 plan does
    not fit it."""
    if threads:
        # Torch's threads spin while they wait for work; on a busy machine more threads than
        # free cores make small batches many times slower, not faster.
        torch.set_num_threads(threads)
    domain, name, version = metadata["domain"], metadata["model_name"], model_dir.name
    remembered = Choices(choices) if choices is not None else None
    model, tokenizer, labels = load_text_classifier(model_dir)
    kept = CompiledModels(compiled, digest) if compiled is not None else None

    def build(chosen: str) -> TextEngine:
        plan = _plan(model_dir, metadata, chosen)
        return TextEngine(
            model, tokenizer, device, max_seq_length, batch_size, chosen, plan, compiled=kept
        )

    try:
        if precision == "auto" and resolve_device(device).type == "cpu":
            engine = _fastest_faithful(
                model_dir, build, max_decision_change, remembered, digest, metadata
            )
        else:
            engine = build(precision)
    except UnknownLayersError as error:
        raise ModelNotFoundError(
            f"{model_dir}: its int8 plan does not fit the model ({error}); "
            "refit it with signalyard models quantize"
        ) from error
    calibration = Calibration.of(metadata)
    if task == "sentiment":
        return SentimentScorer(domain, engine, labels, name, version, calibration)
    taxonomy = RiskTaxonomy.load(model_dir / TAXONOMY_FILE)
    return TicketScorer(domain, engine, labels, taxonomy, name, version, calibration=calibration)


def _plan(model_dir: Path, metadata: dict[str, Any], precision: str) -> tuple[str, ...]:
    """The layers the model's plan for ``precision`` keeps in fp32, with a warning when an ONNX
    plan was fitted under other quantizer settings than this CPU gets (7- or 8-bit weights)."""
    record = plan_of(metadata, precision)
    if precision == "onnx-int8" and record and record.get("scheme") != (here := int8_scheme()):
        log.warning(
            "%s: its onnx-int8 plan was fitted for %s, this CPU runs %s; refit it here with "
            "signalyard models quantize --runtime onnx-int8",
            model_dir, record.get("scheme"), here,
        )  # fmt: skip
    return kept_fp32(metadata, precision)


def _fastest_faithful(
    model_dir: Path,
    build: Callable[[str], TextEngine],
    max_decision_change: float,
    choices: Choices | None,
    digest: str,
    metadata: dict[str, Any],
) -> TextEngine:
    # A choice holds while what the candidates compute holds: the ONNX quantizer's settings on
    # this CPU and the model's plan for it (in its metadata, outside its content hash). torch's
    # int8 is no candidate, so its plan is not part of the key.
    runtimes = json.dumps(
        {
            "scheme": int8_scheme(),
            "keep_fp32": kept_fp32(metadata, "onnx-int8"),
        }
    )
    key = Choices.key(digest, max_decision_change, runtimes)
    if choices is not None and (chosen := choices.get(key)):
        return build(chosen)
    validation = source_validation(model_dir)
    if not isinstance(validation, TextData) or not validation.texts:
        log.info("%s: precision auto keeps fp32: its validation rows are not at hand", model_dir)
        return build("fp32")
    engine, trials = choose(build, validation.texts, max_decision_change, cpu_flags())
    rows = min(len(validation.texts), MAX_ROWS)
    log.info("%s: %s", model_dir, describe(trials, engine.precision, rows))
    if choices is not None:
        choices.put(key, engine.precision)
    return engine
