"""Loading a model folder, or a domain's live registry version, as a ready :class:`Scorer`.

    from models.loading import load_scorer, load_live_scorer, ModelNotFoundError

    load_scorer(model_dir: Path, device: str = "auto", max_seq_length: int = 128,
                precision: str = "auto", batch_size: int = 64) -> Scorer
    load_live_scorer(settings: Settings, domain: DomainName) -> Scorer
    load_version(settings: Settings, domain: DomainName, version: str) -> Scorer

Only JSON, safetensors and LightGBM's text model files are read (never pickles) and nothing is
downloaded. The scorer's ``version`` is the name of the folder it came from (``v3`` for
registry versions). Each returned class satisfies the :class:`models.base.Scorer` protocol.
"""

from __future__ import annotations

import json
from pathlib import Path

from config.settings import DomainName, Settings
from models.calibration import Calibration
from models.errors import BrokenModelError, ModelNotFoundError
from models.inference import SensorEngine, TextEngine
from models.quantization import UnknownLayersError, kept_fp32
from models.registry import CONTENT_HASH, METADATA_FILE, Registry, content_sha256
from models.scorers import SensorScorer, SentimentScorer, TicketScorer
from models.sensor_model import load_sensor_model
from models.tasks import TAXONOMY_FILE, task_of
from models.taxonomy import RiskTaxonomy
from models.text_model import load_text_classifier

__all__ = ["LoadedScorer", "ModelNotFoundError", "load_live_scorer", "load_scorer", "load_version"]

LoadedScorer = SentimentScorer | TicketScorer | SensorScorer


def read_metadata(model_dir: Path) -> dict:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"{model_dir} is not a model folder: it has no {METADATA_FILE}")
    return json.loads(path.read_text(encoding="utf-8"))


def load_scorer(
    model_dir: Path,
    device: str = "auto",
    max_seq_length: int = 128,
    precision: str = "auto",
    batch_size: int = 64,
) -> LoadedScorer:
    """The model in ``model_dir``, its files checked against the content hash recorded when it
    was registered. Raises ModelNotFoundError when the folder is not a model, BrokenModelError
    (one) when its files changed since, or its weights do not load as its config says."""
    model_dir = Path(model_dir)
    digest = verified_sha256(model_dir)
    scorer = _build_scorer(model_dir, device, max_seq_length, precision, batch_size)
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
    model_dir: Path, device: str, max_seq_length: int, precision: str, batch_size: int
) -> LoadedScorer:
    metadata = read_metadata(model_dir)
    domain, name, version = metadata["domain"], metadata["model_name"], model_dir.name
    task = task_of(model_dir)
    if task == "defect":
        return SensorScorer(domain, SensorEngine(load_sensor_model(model_dir)), name, version)
    model, tokenizer, labels = load_text_classifier(model_dir)
    try:
        engine = TextEngine(
            model, tokenizer, device, max_seq_length, batch_size, precision, kept_fp32(metadata)
        )
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


def load_live_scorer(settings: Settings, domain: DomainName) -> LoadedScorer:
    """The live version of ``domain`` from the registry at ``settings.models_dir``."""
    version = Registry(settings.models_dir).live_dir(domain).name
    return load_version(settings, domain, version)


def load_version(settings: Settings, domain: DomainName, version: str) -> LoadedScorer:
    """A registered version of ``domain``, set up for inference as the settings say."""
    return load_scorer(
        Registry(settings.models_dir).version_dir(domain, version),
        settings.inference.device,
        settings.inference.max_seq_length,
        settings.inference.precision,
        settings.batching.of(domain).max_batch_size,
    )
