"""Loading a model folder, or a domain's live registry version, as a ready :class:`Scorer`.

    from models.serving.loading import load_scorer, load_live_scorer, ModelNotFoundError

    load_scorer(model_dir: Path, device: str = "auto", max_seq_length: int = 128,
                precision: str = "auto", batch_size: int = 64,
                max_decision_change: float = 0.01, choices: Path | None = None,
                threads: int = 0, compiled: Path | None = None) -> Scorer
    load_live_scorer(settings: Settings, domain: DomainName) -> Scorer
    load_version(settings: Settings, domain: DomainName, version: str) -> Scorer
    load_folder(settings: Settings, model_dir: Path, batch_size: int = 64,
                precision: str | None = None) -> Scorer

Only JSON, safetensors and LightGBM's text model files are read (never pickles) and nothing is
downloaded. The scorer's ``version`` is the name of the folder it came from (``v3`` for
registry versions). Each returned class satisfies the :class:`models.base.Scorer` protocol.
A defect model loads without the text runtime (torch, transformers, ONNX Runtime:
:mod:`models.serving.text_loading`), which is imported with the first text model.
"""

from __future__ import annotations

from pathlib import Path

from config.settings import DomainName, Settings
from models.errors import BrokenModelError, ModelNotFoundError
from models.registry import CONTENT_HASH, Registry, content_sha256, read_metadata
from models.sensor_model import load_sensor_model
from models.serving.scorers import SensorScorer, SentimentScorer, TicketScorer
from models.serving.sensor_inference import SensorEngine
from models.tasks import task_of

__all__ = [
    "LoadedScorer",
    "ModelNotFoundError",
    "load_folder",
    "load_live_scorer",
    "load_scorer",
    "load_version",
]

LoadedScorer = SentimentScorer | TicketScorer | SensorScorer
PRECISION_CHOICES = "precision-choices.json"  # in the home: what precision auto chose, per model
COMPILED = "compiled"  # in the home: the ONNX files built for models, loaded again next time


def load_scorer(
    model_dir: Path,
    device: str = "auto",
    max_seq_length: int = 128,
    precision: str = "auto",
    batch_size: int = 64,
    max_decision_change: float = 0.01,
    choices: Path | None = None,
    threads: int = 0,
    compiled: Path | None = None,
) -> LoadedScorer:
    """The model in ``model_dir``, its files checked against the content hash recorded when it
    was registered. Raises ModelNotFoundError when the folder is not a model, BrokenModelError
    (one) when its files changed since, or its weights do not load as its config says.

    ``precision="auto"`` on a CPU tries the runtimes the CPU runs natively on the model's
    validation rows and keeps the fastest whose decisions differ from fp32's on at most
    ``max_decision_change`` of them (``models.serving.precision_choice``); the choice is logged and
    remembered in ``choices`` (a JSON file), which later loads of the model take. ``threads``:
    torch's threads for a text model (0 leaves torch's default; see
    :func:`models.serving.text_loading.load_text_scorer`). ``compiled``: a folder where the ONNX
    runtimes keep the files they build for a model, and load them from on later loads."""
    model_dir = Path(model_dir)
    digest = verified_sha256(model_dir)
    metadata = read_metadata(model_dir)
    task = task_of(model_dir)
    scorer: LoadedScorer
    if task == "defect":
        name, version = metadata["model_name"], model_dir.name
        engine = SensorEngine(load_sensor_model(model_dir))
        scorer = SensorScorer(metadata["domain"], engine, name, version)
    else:
        # Imported here, not above: a worker that scores sensors alone never needs it.
        from models.serving.text_loading import load_text_scorer

        scorer = load_text_scorer(
            model_dir, metadata, task, device, max_seq_length, precision, batch_size,
            max_decision_change, choices, digest, threads, compiled,
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
    the settings' threads (``pipeline.torch_threads``), so that every process scores it
    alike; the ONNX files built for it are kept in the home for the next load."""
    return load_scorer(
        model_dir,
        settings.inference.device,
        settings.inference.max_seq_length,
        precision or settings.inference.precision,
        batch_size,
        settings.inference.max_decision_change,
        settings.home_dir / PRECISION_CHOICES,
        settings.pipeline.torch_threads,
        settings.home_dir / COMPILED,
    )
