"""Training a model of a domain and registering it: the entry point of ``signalyard train``.

    from models.training.trainer import TrainOptions, train_model
    from models.registry import Registry

    train_model(domain: DomainName, task: Task, data: Path, registry: Registry,
                options: TrainOptions, promote: bool = True) -> str   # the new version, "v3"

``task`` (``models.tasks``) says what the file holds: ``sentiment`` (CSV ``text,label``),
``intent_risk`` (``text,intent``; ``options.taxonomy`` names the risk taxonomy JSON) or
``defect`` (the AI4I 2020 columns); the model is registered under ``domain``. A stratified, seeded
``options.validation_fraction`` of the rows is held out: text models stop early on it, the
defect model is selected by cross-validation on the training rows instead
(``models.training.train_defect``); the model's figures on it are stored as ``metrics.json``.
``TrainOptions(mode="head")`` trains a linear head on frozen embeddings: a few hundred rows
train in seconds on a CPU, which is what a demo needs to bootstrap an empty registry.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers

from config.settings import DomainName
from models.data import SENTIMENT_LABELS, SensorData, TextData, fingerprint, read_labeled
from models.errors import DataError
from models.registry import METADATA_FILE, METRICS_FILE, Registry
from models.sensor_model import save_sensor_model
from models.splits import label_counts, split_source, subset, with_text_alone
from models.tasks import TAXONOMY_FILE, TREES_KIND, Task
from models.taxonomy import RiskTaxonomy
from models.text_model import save_text_classifier
from models.training.fitting import FitResult, seed_everything
from models.training.options import TrainOptions

__all__ = [
    "TrainOptions",
    "data_record",
    "fit_record",
    "train_model",
    "write_model_files",
]


def software_versions() -> dict[str, str]:
    """What a model was trained with, for its metadata."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def data_record(
    data: Path,
    train_rows: Sequence[int],
    validation_rows: Sequence[int],
    train_data: TextData | SensorData,
    options: TrainOptions,
) -> dict[str, Any]:
    """The ``data`` block of a version's metadata: the file, its split and label counts."""
    given = options.validation_data
    return {
        "path": str(data.resolve()),
        "sha256": fingerprint(data),
        "rows": len(train_rows) + len(validation_rows),
        "train_rows": len(train_rows),
        "validation_rows": len(validation_rows),
        # The split, so that the held-out rows can be cut again (models.training.adaptation).
        "seed": options.seed,
        "validation_fraction": options.validation_fraction,
        "label_counts": label_counts(train_data),
        # A validation file given at training replaces the cut split (models.training.adaptation).
        **(
            {}
            if given is None
            else {"validation": {"path": str(given.resolve()), "sha256": fingerprint(given)}}
        ),
    }


def fit_record(started: float, fit: FitResult, device: str) -> dict[str, Any]:
    """The ``training`` block of a version's metadata: time since ``started`` (monotonic) and
    the epochs of the fit."""
    return {
        "seconds": round(time.monotonic() - started, 1),
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "validation_history": fit.history,
        "device": device,
    }


def write_model_files(folder: Path, metadata: dict[str, Any]) -> None:
    """``metrics.json`` and ``metadata.json`` of a finished model folder."""
    (folder / METRICS_FILE).write_text(json.dumps(metadata["metrics"], indent=2), "utf-8")
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2), "utf-8")


def _default_name(domain: DomainName, task: Task, base: str) -> str:
    if task == "defect":
        return f"{domain}-gbdt"
    base_path = Path(base)
    # The bundled encoder lives in a folder called "model"; name it after its package instead.
    name = "all-MiniLM-L6-v2" if base_path.name == "model" else base_path.name
    return f"{domain}-{name}"


def _train_into(
    domain: DomainName, task: Task, data: Path, options: TrainOptions, folder: Path
) -> dict:
    """Train and save a model folder; return its metadata."""
    from models.training.train_defect import sensor_validation_metrics, train_defect
    from models.training.train_text import base_model_path, train_text

    started = time.monotonic()
    taxonomy, labels = None, list(SENTIMENT_LABELS)
    if task == "intent_risk":
        if options.taxonomy is None:
            raise DataError(f"{domain} models need a risk taxonomy file (--taxonomy PATH)")
        taxonomy = RiskTaxonomy.load(options.taxonomy)
        labels = list(taxonomy.intents)
    given = options.validation_data
    rows, train_rows, val_rows = split_source(
        read_labeled(task, data, labels, domain),
        None if given is None else read_labeled(task, given, labels, domain),
        options.validation_fraction,
        options.seed,
    )
    train_data, val_data = subset(rows, train_rows), subset(rows, val_rows)
    if isinstance(train_data, TextData):
        train_data = with_text_alone(train_data, options.text_alone_share, options.seed)
    selection: dict[str, Any] = {}
    calibration: dict[str, Any] = {}
    if isinstance(train_data, SensorData):
        assert isinstance(val_data, SensorData)
        sensor_model, result = train_defect(train_data, options)
        save_sensor_model(sensor_model, folder)
        kind, base = TREES_KIND, None
        metrics = sensor_validation_metrics(sensor_model, val_data)
        selection = {"cross_validation": sensor_model.cross_validation}
    else:
        assert isinstance(val_data, TextData)
        trained_text = train_text(task, train_data, val_data, labels, taxonomy, options)
        save_text_classifier(trained_text.model, trained_text.tokenizer, labels, folder)
        if taxonomy is not None:
            (folder / TAXONOMY_FILE).write_text(taxonomy.to_json(), encoding="utf-8")
        kind, base = "text-classifier", str(base_model_path(options))
        metrics, result = trained_text.metrics, trained_text.fit
        calibration = {"calibration": trained_text.calibration}
    return {
        "domain": domain,
        "task": task,
        "kind": kind,
        "model_name": options.model_name or _default_name(domain, task, base or ""),
        "base_model": base,
        "mode": options.mode if task != "defect" else "full",
        "data": data_record(data, train_rows, val_rows, train_data, options),
        "options": options.model_dump(mode="json"),
        "training": {**fit_record(started, result, options.device), **selection},
        "metrics": metrics,
        **calibration,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": software_versions(),
    }


def train_model(
    domain: DomainName,
    task: Task,
    data: Path,
    registry: Registry,
    options: TrainOptions,
    promote: bool = True,
) -> str:
    """Train a ``task`` model on the CSV at ``data``, register it under ``domain``; return the
    version."""
    options = options.resolved(task)
    seed_everything(options.seed)
    staging = Path(tempfile.mkdtemp(prefix=f"signalyard-{domain}-"))
    try:
        metadata = _train_into(domain, task, Path(data), options, staging)
        write_model_files(staging, metadata)
        return registry.register(domain, staging, promote=promote)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
