"""The rows a model trains and validates on: seeded, stratified splits of a labeled file, and
the held-out rows of the source data a registered model was trained on.

    split_indices(strata: list, fraction: float, seed: int) -> (train rows, validation rows)
    split_source(data, validation | None, fraction, seed) -> (all rows, train rows, validation rows)
    read_source(model_dir: Path, metadata: dict) -> (data, train rows, validation rows) | str
    source_validation(model_dir: Path) -> TextData | SensorData | None

Both training (to cut its split) and serving (to check a runtime's decisions on the model's own
validation rows) read these, so they sit beside the data types rather than in either.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from sklearn.model_selection import train_test_split

from models.data import SensorData, TextData, fingerprint, read_labeled
from models.errors import DataError
from models.registry import read_metadata
from models.tasks import LABELS_FILE, task_of


def split_indices(strata: list[Any], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and validation row indices, stratified when every class has two rows or more."""
    indices = list(range(len(strata)))
    if len(indices) < 4:
        raise DataError(f"{len(indices)} rows are too few to hold out a validation split")
    stratify = strata if min(Counter(strata).values()) >= 2 else None
    try:
        train, validation = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError:
        # Too small a split to hold one row of every class: fall back to a plain random cut.
        train, validation = train_test_split(indices, test_size=fraction, random_state=seed)
    return sorted(train), sorted(validation)


@overload
def subset(data: TextData, rows: Sequence[int]) -> TextData: ...
@overload
def subset(data: SensorData, rows: Sequence[int]) -> SensorData: ...
def subset(data: TextData | SensorData, rows: Sequence[int]) -> TextData | SensorData:
    """The rows of ``data`` at ``rows``, in that order."""
    if isinstance(data, SensorData):
        return SensorData(
            [data.readings[i] for i in rows],
            [data.failure[i] for i in rows],
            [data.modes[i] for i in rows],
        )
    alone = None if data.text_alone is None else [data.text_alone[i] for i in rows]
    return TextData([data.texts[i] for i in rows], [data.labels[i] for i in rows], alone)


def concat(first: TextData | SensorData, second: TextData | SensorData) -> TextData | SensorData:
    """The rows of ``first``, then those of ``second``."""
    if isinstance(first, SensorData) and isinstance(second, SensorData):
        return SensorData(
            first.readings + second.readings,
            first.failure + second.failure,
            first.modes + second.modes,
        )
    assert isinstance(first, TextData) and isinstance(second, TextData)
    alone = None
    if first.text_alone is not None and second.text_alone is not None:
        alone = first.text_alone + second.text_alone
    return TextData(first.texts + second.texts, first.labels + second.labels, alone)


def with_text_alone(data: TextData, share: float, seed: int) -> TextData:
    """``data`` and, after it, a seeded ``share`` of its rows again as their text alone
    (``TextData.text_alone``), so a model whose domain reads more of an event than its text
    learns events that lack the other fields too. ``data`` itself where it has no such inputs."""
    if data.text_alone is None or share <= 0:
        return data
    rows = sorted(
        random.Random(seed).sample(range(len(data.texts)), round(share * len(data.texts)))
    )
    return TextData(
        data.texts + [data.text_alone[i] for i in rows],
        data.labels + [data.labels[i] for i in rows],
        data.text_alone + [data.text_alone[i] for i in rows],
    )


def split_source(
    data: TextData | SensorData,
    validation: TextData | SensorData | None,
    fraction: float,
    seed: int,
) -> tuple[TextData | SensorData, list[int], list[int]]:
    """All rows and the indices of the training and validation rows among them. A given
    ``validation`` set is the validation split and every row of ``data`` trains; without one,
    a stratified, seeded ``fraction`` of ``data`` is held out."""
    if validation is None:
        train_rows, validation_rows = split_indices(strata(data), fraction, seed)
        return data, train_rows, validation_rows
    size, held = len(strata(data)), len(strata(validation))
    return concat(data, validation), list(range(size)), list(range(size, size + held))


def strata(data: TextData | SensorData) -> list[Any]:
    """What splits are stratified on: the label, or for sensors whether the machine failed."""
    return list(data.failure) if isinstance(data, SensorData) else list(data.labels)


def label_counts(data: TextData | SensorData) -> dict[str, int]:
    """Rows per label (sensors: ``ok`` and ``defect``), the distribution a drift check
    compares the predicted labels of a stream with."""
    if isinstance(data, SensorData):
        defects = sum(data.failure)
        return {"ok": len(data.failure) - defects, "defect": defects}
    return dict(sorted(Counter(data.labels).items()))


def source_split(metadata: dict[str, Any]) -> tuple[int, float]:
    """The seed and validation fraction the model's source data was split with. Models
    trained before ``data`` recorded them carry them in their training options."""
    data, options = metadata.get("data", {}), metadata.get("options", {})
    return (
        int(data.get("seed", options.get("seed", 13))),
        float(data.get("validation_fraction", options.get("validation_fraction", 0.15))),
    )


def read_source(
    model_dir: Path, metadata: dict[str, Any]
) -> tuple[TextData | SensorData, list[int], list[int]] | str:
    """The source data a model was trained on and its train and validation rows, or why they
    cannot be had (a file is gone or no longer the one trained on)."""
    data = metadata.get("data", {})
    files = [data] + ([data["validation"]] if "validation" in data else [])
    for record in files:
        path = Path(record.get("path", ""))
        if not path.is_file():
            return f"source data {path} not found"
        if record.get("sha256") not in (None, fingerprint(path)):
            return f"source data {path} changed since the model was trained"
    task = task_of(model_dir)
    labels = [] if task == "defect" else json.loads((model_dir / LABELS_FILE).read_text("utf-8"))
    domain = metadata.get("domain")
    read = [read_labeled(task, Path(record["path"]), labels, domain) for record in files]
    seed, fraction = source_split(metadata)
    return split_source(read[0], read[1] if len(read) > 1 else None, fraction, seed)


def source_validation(model_dir: Path) -> TextData | SensorData | None:
    """The held-out validation rows of the source data the model (or, for an adapted model,
    the model it descends from) was trained on; None if that file is gone or changed."""
    model_dir = Path(model_dir)
    source = read_source(model_dir, read_metadata(model_dir))
    if isinstance(source, str):
        return None
    data, _, validation_rows = source
    return subset(data, validation_rows)
