"""Reading the labeled CSV files of ``../shared/data`` into validated, typed rows.

Every check a user can trip (an empty file, a missing column, an unknown label, a value that
is not a number) raises :class:`DataError` naming the file, the line and the problem.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.base import ModelInput, SensorReading
from models.errors import DataError
from models.tasks import LABEL_COLUMNS, Task

SENTIMENT_LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
FAILURE_MODES: tuple[str, ...] = ("TWF", "HDF", "PWF", "OSF", "RNF")
MACHINE_TYPES: tuple[str, ...] = ("L", "M", "H")

SENSOR_COLUMNS: dict[str, str] = {
    "air_temp_k": "Air temperature [K]",
    "process_temp_k": "Process temperature [K]",
    "rpm": "Rotational speed [rpm]",
    "torque_nm": "Torque [Nm]",
    "tool_wear_min": "Tool wear [min]",
}


# The model input of a labeled row, for a domain whose model reads more of a row than its
# ``text`` (a review's title): registered by the domain (domains.register), so that training,
# evaluation and validation read a row as the worker reads the event it makes.
RowInput = Callable[[Mapping[str, str]], ModelInput]
_ROW_INPUTS: dict[str, RowInput | None] = {}  # None: the model reads the row's text alone


def register_row_input(domain: str, row_input: RowInput | None) -> None:
    _ROW_INPUTS[domain] = row_input


def _row_input(domain: str | None) -> RowInput | None:
    if domain is not None and domain not in _ROW_INPUTS:
        # Read as text alone, a domain's rows could train or judge a model on other inputs
        # than its events give it.
        raise DataError(f"domain {domain!r} is not registered (import domains first)")
    return _ROW_INPUTS.get(domain or "")


def _input_of(row_input: RowInput, row: Mapping[str, str], path: Path, line: int) -> str:
    try:
        return str(row_input(row))
    except ValueError as error:
        raise DataError(f"{path}:{line}: {error}") from None


@dataclass(frozen=True)
class TextData:
    texts: list[str]
    labels: list[str]
    # Each row's model input from its text alone, where the domain's model reads more of a
    # row (the input of an event that lacks the other fields); None where it reads the text.
    text_alone: list[str] | None = None


@dataclass(frozen=True)
class SensorData:
    readings: list[SensorReading]
    failure: list[int]  # the ``Machine failure`` column
    modes: list[tuple[str, ...]]  # the failure-mode flags set on each row, in FAILURE_MODES order


def fingerprint(path: Path) -> str:
    """The SHA-256 of a file's bytes: which data a model was trained on."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_rows(path: Path, required: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """A CSV file's rows by column name; raises DataError if it is empty or lacks ``required``."""
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        if not header:
            raise DataError(f"{path} is empty: expected a header row with {', '.join(required)}")
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(
                f"{path} lacks column(s) {', '.join(missing)}; it has {', '.join(header)}"
            )
        reader.fieldnames = header
        rows = list(reader)
    if not rows:
        raise DataError(f"{path} has a header but no rows")
    return rows


def read_text(
    path: Path, task: Task, known_labels: tuple[str, ...], domain: str | None = None
) -> TextData:
    """Read a text task's file: ``text`` and the task's label column (``text,label`` for
    sentiment, ``text,intent`` for intent_risk); labels must be known. Each row's model input
    is its text, or what ``domain``'s registered row input makes of the row."""
    text_column, label_column = "text", LABEL_COLUMNS[task]
    rows = read_rows(path, (text_column, label_column))
    row_input = _row_input(domain)
    known = set(known_labels)
    texts: list[str] = []
    labels: list[str] = []
    text_alone: list[str] = []
    for line, row in enumerate(rows, start=2):
        text, label = (row[text_column] or "").strip(), (row[label_column] or "").strip()
        if not text:
            raise DataError(f"{path}:{line}: empty {text_column}")
        if label not in known:
            raise DataError(f"{path}:{line}: unknown {label_column} {label!r}")
        if row_input is not None:
            text_alone.append(_input_of(row_input, {text_column: text}, path, line))
            text = _input_of(row_input, row, path, line)
        texts.append(text)
        labels.append(label)
    return TextData(texts, labels, text_alone if row_input is not None else None)


def _number(path: Path, line: int, column: str, value: str | None) -> float:
    try:
        return float(value or "")
    except ValueError:
        raise DataError(f"{path}:{line}: {column} is not a number: {value!r}") from None


def _flag(path: Path, line: int, column: str, value: str | None) -> int:
    if (value or "").strip() not in ("0", "1"):
        raise DataError(f"{path}:{line}: {column} must be 0 or 1, not {value!r}")
    return int(value or "0")


def read_readings(path: Path) -> SensorData:
    """Read an AI4I 2020 file (its original column names) into readings and labels."""
    required = ("Type", *SENSOR_COLUMNS.values(), "Machine failure", *FAILURE_MODES)
    rows = read_rows(path, required)
    readings: list[SensorReading] = []
    failure: list[int] = []
    modes: list[tuple[str, ...]] = []
    for line, row in enumerate(rows, start=2):
        machine_type = (row["Type"] or "").strip()
        if machine_type not in MACHINE_TYPES:
            raise DataError(f"{path}:{line}: unknown Type {machine_type!r} (expected L, M or H)")
        values = {key: _number(path, line, col, row[col]) for key, col in SENSOR_COLUMNS.items()}
        readings.append(SensorReading(machine_type=machine_type, **values))
        failure.append(_flag(path, line, "Machine failure", row["Machine failure"]))
        modes.append(tuple(m for m in FAILURE_MODES if _flag(path, line, m, row[m])))
    return SensorData(readings, failure, modes)


def read_texts(path: Path, column: str = "text", domain: str | None = None) -> list[str]:
    """The non-empty ``column`` values of a CSV file or a JSON-lines file (``.jsonl``, one
    object per line), e.g. unlabeled in-domain text for distillation; of a CSV file, what
    ``domain``'s registered row input makes of each such row (see ``read_text``)."""
    if not path.is_file():
        raise FileNotFoundError(f"data file {path} not found")
    if path.suffix in (".jsonl", ".ndjson"):
        texts = []
        with path.open(encoding="utf-8") as handle:
            for line, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}:{line}: not JSON: {error.msg}") from None
                if not isinstance(row, dict) or column not in row:
                    raise DataError(f"{path}:{line}: no {column!r} field")
                texts.append(str(row[column]).strip())
    else:
        rows = read_rows(path, (column,))
        row_input = _row_input(domain)
        texts = [
            (row[column] or "").strip()
            if row_input is None or not (row[column] or "").strip()
            else _input_of(row_input, row, path, line)
            for line, row in enumerate(rows, start=2)
        ]
    texts = [text for text in texts if text]
    if not texts:
        raise DataError(f"{path} has no {column} values")
    return texts


AI4I_COLUMNS: tuple[str, ...] = (
    "UDI",
    "Product ID",
    "Type",
    *SENSOR_COLUMNS.values(),
    "Machine failure",
    *FAILURE_MODES,
)


def failure_label(failure: int, modes: tuple[str, ...]) -> str:
    """An AI4I row's label as feedback gives it: "none", its first failure mode, or "failure"
    for a failure without a mode."""
    if not failure:
        return "none"
    return next((mode for mode in FAILURE_MODES if mode in modes), "failure")


def ai4i_row(udi: int, reading: SensorReading, label: str) -> list[Any]:
    """A row of an AI4I file (``AI4I_COLUMNS``) for a reading labeled as ``failure_label``
    gives labels; ``udi`` numbers it."""
    kind = reading["machine_type"]
    measures = [reading[key] for key in SENSOR_COLUMNS]  # type: ignore[literal-required]
    flags = [int(mode == label) for mode in FAILURE_MODES]
    return [udi, f"{kind}{udi:05d}", kind, *measures, int(label != "none"), *flags]


def read_labeled(
    task: Task, path: Path, labels: Sequence[str], domain: str | None = None
) -> TextData | SensorData:
    """A labeled file of ``task`` (of ``domain``, see ``read_text``); text labels must be among
    ``labels``."""
    if task == "defect":
        return read_readings(path)
    return read_text(path, task, tuple(labels), domain)


def labeled_inputs(data: TextData | SensorData) -> list[tuple[str | SensorReading, str]]:
    """Each row's model input (a text, or a reading) with its label as feedback gives one (a
    text's label, or a reading's ``failure_label``)."""
    if isinstance(data, SensorData):
        return [
            (reading, failure_label(failed, modes))
            for reading, failed, modes in zip(data.readings, data.failure, data.modes, strict=True)
        ]
    return list(zip(data.texts, data.labels, strict=True))
