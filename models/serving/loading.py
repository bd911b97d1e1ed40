"""Loading a model folder, or a domain's live registry version, as a ready :class:`Scorer`.

    from models.serving.loading import load_scorer, load_live_scorer, ModelNotFoundError

    load_scorer(model_dir: Path, device: str = "auto", max_seq_length: int = 128,
                precision: str = "auto", batch_size: int = 64,
                max_decision_change: float = 0.01) -> Scorer
    load_live_scorer(settings: Settings, domain: DomainName) -> Scorer
    load_version(settings: Settings, domain: DomainName, version: str) -> Scorer
    load_folder(settings: Settings, model_dir: Path, batch_size: int = 64,
                precision: str | None = None) -> Scorer
    use_scoring_threads(settings: Settings) -> None

Only JSON, safetensors and LightGBM's text model files are read (never pickles) and nothing is
downloaded. The scorer's ``version`` is the name of the folder it came from (``v3`` for
registry versions). Each returned class satisfies the :class:`models.base.Scorer` protocol.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from config.settings import DomainName, Settings
from models.calibration import Calibration
from models.data import TextData
from models.errors import BrokenModelError, ModelNotFoundError
from models.registry import CONTENT_HASH, Registry, content_sha256, read_metadata
from models.sensor_model import load_sensor_model
from models.serving.cpu_features import cpu_flags
from models.serving.inference import SensorEngine, TextEngine, resolve_device
from models.serving.onnx_runtime import int8_scheme
from models.serving.precision_choice import MAX_ROWS, Choices, choose, describe
from models.serving.quantization import UnknownLayersError, kept_fp32, plan_of
from models.serving.scorers import SensorScorer, SentimentScorer, TicketScorer
from models.splits import source_validation
from models.tasks import TAXONOMY_FILE, task_of
from models.taxonomy import RiskTaxonomy
from models.text_model import load_text_classifier

__all__ = [
    "LoadedScorer",
    "ModelNotFoundError",
    "load_folder",
    "load_live_scorer",
    "load_scorer",
    "load_version",
    "use_scoring_threads",
]

LoadedScorer = SentimentScorer | TicketScorer | SensorScorer
log = logging.getLogger(__name__)
PRECISION_CHOICES = "precision-choices.json"  # in the home: what precision auto chose, per model


def load_scorer(
    model_dir: Path,
    device: str = "auto",
    max_seq_length: int = 128,
    precision: str = "auto",
    batch_size: int = 64,
    max_decision_change: float = 0.01,
    choices: Path | None = None,
) -> LoadedScorer:
    """The model in ``model_dir``, its files checked against the content hash recorded when it
    was registered. Raises ModelNotFoundError when the folder is not a model, BrokenModelError
    (one) when its files changed since, or its weights do not load as its config says.

    ``precision="auto"`` on a CPU tries the runtimes the CPU runs natively on the model's
    validation rows and keeps the fastest whose decisions differ from fp32's on at most
    ``max_decision_change`` of them (``models.serving.precision_choice``); the choice is logged and
    remembered in ``choices`` (a JSON file), which later loads of the model take."""
    model_dir = Path(model_dir)
    digest = verified_sha256(model_dir)
    remembered = Choices(choices) if choices is not None else None
    scorer = _build_scorer(
        model_dir, device, max_seq_length, precision, batch_size, max_decision_change,
        (remembered, digest),
    )  # fmt: skip
    scorer.model_sha256 = digest
    return scorer


def verified_sha256(model_dir: Path) -> str:
    """The folder's content hash; BrokenModelError when it differs from the registered one."""
    recorded = read_metadata(model_dir).get(CONTENT_HASH)
    actual = content_sha256(model_dir)
    if recorded and recorded != actual:
        raise BrokenModelError(
            f"{model_dir}: its files changed since it was registered (content sha256 "
            f"{actual[:12]}..., registered {recorded[:12]}...)"
        )
    return actual


def _build_scorer(
    model_dir: Path,
    device: str,
    max_seq_length: int,
    precision: str,
    batch_size: int,
    max_decision_change: float,
    remembered: tuple[Choices | None, str],
) -> LoadedScorer:
    metadata = read_metadata(model_dir)
    domain, name, version = metadata["domain"], metadata["model_name"], model_dir.name
    task = task_of(model_dir)
    if task == "defect":
        return SensorScorer(domain, SensorEngine(load_sensor_model(model_dir)), name, version)
    model, tokenizer, labels = load_text_classifier(model_dir)

    def build(chosen: str) -> TextEngine:
        plan = _plan(model_dir, metadata, chosen)
        return TextEngine(model, tokenizer, device, max_seq_length, batch_size, chosen, plan)

    try:
        if precision == "auto" and resolve_device(device).type == "cpu":
            engine = _fastest_faithful(model_dir, build, max_decision_change, *remembered, metadata)
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


def load_live_scorer(settings: Settings, domain: DomainName) -> LoadedScorer:
    """The live version of ``domain`` from the registry at ``settings.models_dir``."""
    version = Registry(settings.models_dir).live_dir(domain).name
    return load_version(settings, domain, version)


def load_version(settings: Settings, domain: DomainName, version: str) -> LoadedScorer:
    """A registered version of ``domain``, set up for inference as the settings say."""
    folder = Registry(settings.models_dir).version_dir(domain, version)
    return load_folder(settings, folder, settings.batching.of(domain).max_batch_size)


def load_folder(
    settings: Settings, model_dir: Path, batch_size: int = 64, precision: str | None = None
) -> LoadedScorer:
    """A model folder set up for inference as the settings say (``precision`` overrides
    theirs), taking what precision auto chose for it before on this machine and running with
    the settings' threads (:func:`use_scoring_threads`), so that every process scores it
    alike."""
    use_scoring_threads(settings)
    return load_scorer(
        model_dir,
        settings.inference.device,
        settings.inference.max_seq_length,
        precision or settings.inference.precision,
        batch_size,
        settings.inference.max_decision_change,
        settings.home_dir / PRECISION_CHOICES,
    )


def use_scoring_threads(settings: Settings) -> None:
    """Set torch's threads to ``pipeline.torch_threads`` (0 leaves torch's default, one per
    core): for the calling thread and every thread that first runs torch after it (threads
    already running torch keep their count); each ONNX Runtime session made later takes as
    many.

    An event's scores depend on the threads as well as on its batch: matrix kernels split their
    sums by thread, so a worker, a replay and a backtest that ran with different counts would
    store different scores for one event. Every process that loads a model through the settings
    therefore runs with the same count."""
    if settings.pipeline.torch_threads:
        # Torch's threads spin while they wait for work; on a busy machine more threads than
        # free cores make small batches many times slower, not faster.
        torch.set_num_threads(settings.pipeline.torch_threads)
