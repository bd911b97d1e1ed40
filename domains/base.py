"""What a domain is: one stream of one industry, described once.

A domain module (``domains/<name>.py``) builds one :class:`Domain` and registers it
(``domains.register``). Everything else (topics, tables, validation, scoring, alerting,
feedback, replays, the CLI) reads the registered domains and never names one.

Events and results are JSON on the wire and pydantic models in code. Raw events are validated
strictly (a string where a number belongs is a wrong type, not a number to guess at); unknown
extra fields are ignored so producers can add fields first and workers learn them later.
``ts`` is ISO 8601; a time without a zone is taken as UTC. A scored result has exactly the
columns of the domain's ``<name>_scores`` ClickHouse table, so the same object is the Kafka
message and the ClickHouse row; the table's DDL is generated from the result's fields.
"""

from __future__ import annotations

import random
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from models.base import ModelInput, Prediction, Scorer
from models.data import labeled_inputs, read_labeled, read_rows
from models.tasks import Task


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class ColumnType:
    """The ClickHouse type of a result field, where the Python type alone does not say it."""

    sql: str


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
Timestamp = Annotated[datetime, AfterValidator(_utc)]
Measure = Annotated[float, Field(allow_inf_nan=False)]
# A result field with few distinct values (a label, a mode, a model name): stored dictionary-coded.
Category = Annotated[str, ColumnType("LowCardinality(String)")]

DATETIME = "DateTime64(3, 'UTC')"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RawEvent(BaseModel):
    """Fields every raw event has. ``domain`` is optional; when given it must match the topic."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)

    id: Name
    ts: Timestamp
    domain: str | None = None

    @property
    def entity(self) -> str:
        """The key that keeps one entity's events in order on one partition."""
        raise NotImplementedError


class ScoredResult(BaseModel):
    """What every scored result carries besides the domain's predictions."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    ts: datetime
    model_name: Category
    model_version: Category
    batch_size: Annotated[int, ColumnType("UInt32")]
    # From the record's Kafka timestamp (ingest) to the end of scoring.
    latency_ms: Annotated[float, ColumnType("Float64")]
    scored_at: datetime
    # The calibrated probability that the model's decision is right; averaged over a window it
    # estimates the live model's accuracy without labels (models.calibration). 0: not known, as
    # in results written before it existed (and in their stored rows), which estimates skip.
    confidence: float = 0.0
    # Lineage: the exact model bytes (models.registry.content_sha256), the input record, and
    # the guarantee it was processed under. Empty or -1 in results written before they existed.
    model_sha256: Category = ""
    source_topic: Category = ""
    source_partition: Annotated[int, ColumnType("Int32")] = -1
    source_offset: Annotated[int, ColumnType("Int64")] = -1
    processing_guarantee: Category = ""


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a result comes from: the input record's position and the processing guarantee
    (``at_least_once``, ``exactly_once``, or ``replay`` for a backtest)."""

    source_topic: str
    source_partition: int
    source_offset: int
    processing_guarantee: str


@dataclass(frozen=True)
class Column:
    """A column of the domain's ``<name>_events`` table, read from the event attribute
    ``attribute`` (default: the column's name). ``optional``: a missing value is stored as ''
    and read back as None."""

    name: str
    sql: str
    attribute: str | None = None
    optional: bool = False

    @property
    def select(self) -> str:
        """The column as the event field of the same name, in a SELECT list."""
        return f"nullIf({self.name}, '') AS {self.name}" if self.optional else self.name


_PYTHON_TYPES = {str: "String", float: "Float32", int: "Int64", bool: "Bool", datetime: DATETIME}


def column_type(annotation: Any) -> str:
    """The ClickHouse type of a result field's annotation; raises TypeError for one it lacks."""
    if typing.get_origin(annotation) is Annotated:
        given = [m for m in annotation.__metadata__ if isinstance(m, ColumnType)]
        return given[0].sql if given else column_type(annotation.__origin__)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return f"Array({column_type(item)})"
    if isinstance(annotation, types.UnionType):
        raise TypeError(f"a stored result field cannot be optional ({annotation})")
    if annotation in _PYTHON_TYPES:
        return _PYTHON_TYPES[annotation]
    raise TypeError(f"no ClickHouse type for {annotation!r}")


@dataclass(frozen=True)
class Panel:
    """A domain's chart on the dashboard and the Grafana board: ``sql`` over its tables, with
    ``{in_window}`` (a condition on ``ts``: the period shown) and ``{bucket}`` (``ts``'s time
    bucket) filled in, returns the columns ``t, series, value``, one line per series;
    ``y_min``/``y_max`` bound the axis (None: the data's), ``percent`` shows values in [0, 1]
    as percentages."""

    title: str
    sql: str
    y_min: float | None = 0.0
    y_max: float | None = None
    percent: bool = False


class Simulation(ABC):
    """A domain's part of the synthetic world (``signalyard.demo.synthetic``): its entities and
    how they behave, drawing from a seeded generator of its own."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    @abstractmethod
    def draw(self) -> tuple[dict[str, Any], str]:
        """The fields of the next event (all but ``id`` and ``ts``) and its true label, as
        feedback gives one."""

    def summary(self, label: str) -> str:
        """A true label as the domain's ``summary_field`` counts it (default: itself)."""
        return label

    def taxonomy(self) -> dict[str, Any] | None:
        """The risk taxonomy of the world's intents (intent_risk), as JSON: levels, weights."""
        return None


@dataclass(frozen=True, kw_only=True)
class Domain:
    """One stream, described once: its topics are ``<name>.raw`` and ``<name>.scored``, its
    tables ``<name>_events`` and ``<name>_scores``.

    ``summary_field``: the result field a result is counted under in summaries (a label, a
    level, a flag). ``feedback_field``: the result field an analyst's label is the truth for,
    what models train on. ``predicted_class``: SQL over ``<name>_scores`` giving the predicted
    class in the label space of the model's training data (default: ``feedback_field``).
    ``score_field``: the number whose mean absolute change a backtest comparison reports.

    ``panel`` is its chart on the dashboard. For the demo, the tests and an empty registry:
    ``simulation`` makes the domain's part of the synthetic world; ``event_fields(model_input,
    source, rng)`` makes the fields of an event (all but ``id`` and ``ts``) that carries a
    labeled row's model input, its entity drawn from ``rng``, and ``labeled_columns`` the
    columns of the labeled file that are event fields beside its text (a review's title): a
    row's cells then make its event's fields, and its model input in training and evaluation
    as in the worker. ``data_sets`` names the folders of a data directory laid out as
    ../shared/data that ``signalyard demo --data`` streams, and ``taxonomy_file``
    (intent_risk) the risk taxonomy in it.
    """

    name: str
    task: Task  # what its model does (models.tasks)
    event: type[RawEvent]
    result: type[ScoredResult]
    entity: str  # the result field and event column holding the entity key
    event_columns: tuple[Column, ...]
    model_input: Callable[[Any], ModelInput]
    summary_field: str
    feedback_field: str
    score_field: str
    simulation: Callable[[random.Random], Simulation]
    event_fields: Callable[[Any, str, random.Random], dict[str, Any]]
    panel: Panel
    data_sets: tuple[str, ...] = ()
    taxonomy_file: str | None = None
    predicted_class: str = ""
    # Fields of the result taken from the event rather than the model (say, what the event's
    # author said of it); default: none.
    result_fields: Callable[[Any], dict[str, Any]] | None = None
    labeled_columns: tuple[str, ...] = ()

    @property
    def events_table(self) -> str:
        return f"{self.name}_events"

    @property
    def scores_table(self) -> str:
        return f"{self.name}_scores"

    @property
    def predicted_sql(self) -> str:
        return self.predicted_class or self.feedback_field

    def labeled_event(
        self, model_input: Any, row: Mapping[str, str], source: str, rng: random.Random
    ) -> dict[str, Any]:
        """The fields of an event (all but ``id`` and ``ts``) that is a labeled row: the ones
        ``event_fields`` makes of its model input, and the row's non-empty ``labeled_columns``
        cells as the event schema reads them (loosely, as ``signalyard produce`` reads a CSV:
        ``1``, ``true`` and ``True`` are all true). Raises ValueError, in one line, for a cell
        the schema refuses."""
        fields = self.event_fields(model_input, source, rng)
        cells = self.labeled_cells(row)
        if not cells:
            return fields
        event = self._labeled({**fields, **cells})
        return {**fields, **event.model_dump(include=set(cells))}

    def labeled_cells(self, row: Mapping[str, str]) -> dict[str, str]:
        """The row's non-empty cells of ``labeled_columns``, stripped."""
        cells = ((name, (row.get(name) or "").strip()) for name in self.labeled_columns)
        return {name: value for name, value in cells if value}

    def labeled_rows(
        self, path: Path, labels: Sequence[str]
    ) -> list[tuple[Any, Mapping[str, str], str]]:
        """Each row of a labeled file as ``labeled_event`` takes it: its model input as
        ``event_fields`` takes one (a text, a reading), the row, and its label. Raises
        DataError naming the line for a malformed file, a label not in ``labels`` or a cell the
        event schema refuses."""
        if not self.labeled_columns:
            return [
                (given, {}, label)
                for given, label in labeled_inputs(read_labeled(self.task, path, labels))
            ]
        # Reading the rows as this domain's checks every cell, each error with its line.
        read = labeled_inputs(read_labeled(self.task, path, labels, self.name))
        rows = read_rows(path)
        return [
            (row["text"].strip(), row, label) for (_, label), row in zip(read, rows, strict=True)
        ]

    def row_input(self, row: Mapping[str, str]) -> ModelInput:
        """The model input of a row of the labeled file (``text`` and ``labeled_columns``): what
        the model reads of the event the row makes. Raises ValueError as ``labeled_event``."""
        fields = self.labeled_event(row["text"].strip(), row, "labeled", random.Random(0))
        return self.model_input(self._labeled(fields))

    def _labeled(self, fields: dict[str, Any]) -> RawEvent:
        try:
            return self.event.model_validate({"id": "labeled", "ts": EPOCH, **fields}, strict=False)
        except ValidationError as error:
            first = error.errors()[0]
            raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None

    def event_row(self, event: RawEvent, ingested_at: datetime) -> dict[str, Any]:
        """The event as a row of ``<name>_events``."""
        names, values, optional = self._event_row_plan
        row = dict(zip(names, values(event), strict=True))
        for name in optional:
            if row[name] is None:
                row[name] = ""
        row["ingested_at"] = ingested_at
        return row

    @cached_property
    def _event_row_plan(self) -> tuple[tuple[str, ...], attrgetter[Any], tuple[str, ...]]:
        """Column names, one getter of all their values (a call per event, not per column: a
        worker builds thousands of rows a second) and the optional columns."""
        attributes = (column.attribute or column.name for column in self.event_columns)
        return (
            ("event_id", "ts", *(column.name for column in self.event_columns)),
            attrgetter("id", "ts", *attributes),
            tuple(column.name for column in self.event_columns if column.optional),
        )

    @property
    def stored_fields(self) -> str:
        """A SELECT list over ``<name>_events`` whose rows parse back into the event schema."""
        return ", ".join(["event_id AS id", "ts", *(c.select for c in self.event_columns)])

    def scored_result(
        self,
        event: RawEvent,
        prediction: Prediction,
        scorer: Scorer,
        batch_size: int,
        ingested_at: datetime,
        scored_at: datetime,
        lineage: Lineage,
    ) -> ScoredResult:
        """The result of one event: a message of ``<name>.scored``, a row of ``<name>_scores``.

        Validated like any message: pydantic's compiled validation costs less than building the
        model unvalidated, and it keeps a model's stray output type off the wire. Raises
        TypeError when the prediction or ``result_fields`` name a field already given.
        """
        fields = {
            "event_id": event.id,
            "ts": event.ts,
            self.entity: event.entity,
            "model_name": scorer.model_name,
            "model_version": scorer.version,
            "batch_size": batch_size,
            "latency_ms": (scored_at - ingested_at).total_seconds() * 1000.0,
            "scored_at": scored_at,
            "model_sha256": scorer.model_sha256,
            "source_topic": lineage.source_topic,
            "source_partition": lineage.source_partition,
            "source_offset": lineage.source_offset,
            "processing_guarantee": lineage.processing_guarantee,
        }
        own = self.result_fields(event) if self.result_fields else {}
        values = {**fields, **own, **prediction}
        if len(values) != len(fields) + len(own) + len(prediction):
            # A model's output or the domain's fields must not overwrite lineage or timing.
            f, o, p = fields.keys(), own.keys(), prediction.keys()
            taken = (f & o) | (f & p) | (o & p)
            raise TypeError(f"{self.name}: result fields given twice: {sorted(taken)}")
        return self.result.model_validate(values)

    def events_columns_sql(self) -> list[tuple[str, str]]:
        """(name, ClickHouse type) of every ``<name>_events`` column, in table order."""
        own = [(column.name, column.sql) for column in self.event_columns]
        return [("event_id", "String"), ("ts", DATETIME), *own, ("ingested_at", DATETIME)]

    def scores_columns_sql(self) -> list[tuple[str, str]]:
        """(name, ClickHouse type) of every ``<name>_scores`` column, in table order: the id
        and time, the domain's own fields, then the fields every result has."""
        fields = self.result.model_fields
        common = [name for name in ScoredResult.model_fields if name not in ("event_id", "ts")]
        own = [name for name in fields if name not in ScoredResult.model_fields]
        order = ["event_id", "ts", *own, *common]
        hints = typing.get_type_hints(self.result, include_extras=True)
        return [(name, column_type(hints[name])) for name in order]
