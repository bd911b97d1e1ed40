"""What ``signalyard demo`` streams: the synthetic world, or held-out rows of real labeled data.

Every fed event carries its true label as feedback gives one (a sentiment, an intent, a failure
mode), so the demo can show accuracy as it goes and publish a share of the labels as analyst
feedback.

Real data (``--data DIR``, in the layout of ../shared/data): each set of a domain present
(``Domain.data_sets``) is cut once, seeded, into rows a quick model may train on
(``<domain>-train.csv`` under the demo's folder, a domain's sets together) and held-out rows
(``STREAM_FRACTION``) that are streamed as live events, made by the domain's
``event_fields`` (a sentence as a headline of a ticker, a query as a ticket of a customer, an
AI4I row as a reading of a machine of its type, ...). Times are those of feeding. The held-out
rows are streamed in a seeded order, again and again with new event ids for as long as the
demo runs.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import domains
from config.settings import DomainName
from models.data import SENTIMENT_LABELS
from models.errors import DataError
from models.taxonomy import RiskTaxonomy
from signalyard.demo.synthetic import World, malform

STREAM_FRACTION = 0.2
MIN_ROWS = 20  # a set with fewer leaves nothing worth training on or streaming


@dataclass(frozen=True)
class Fed:
    """One record for a raw topic, with the id and true label of its event (None: malformed)."""

    key: bytes
    value: bytes
    event_id: str | None
    truth: str | None


@dataclass(frozen=True)
class DomainData:
    """A domain's real data: the file a model trains on and the held-out rows to stream, each
    as event fields (no id or time yet) with its true label."""

    sets: tuple[str, ...]
    train: Path
    stream: list[tuple[dict[str, Any], str]]
    taxonomy: Path | None


def prepare(data_dir: Path, out_dir: Path, seed: int) -> dict[DomainName, DomainData]:
    """Cut each set present in ``data_dir`` into training and streamed rows; DataError for a
    malformed file, one of fewer than ``MIN_ROWS`` rows, or a taxonomy the domain needs missing."""
    prepared: dict[DomainName, DomainData] = {}
    for spec in domains.all():
        domain = spec.name
        sets = tuple(name for name in spec.data_sets if (data_dir / name / "train.csv").is_file())
        if not sets:
            continue
        taxonomy = None
        if spec.taxonomy_file is not None:
            taxonomy = data_dir / spec.taxonomy_file
            if not taxonomy.is_file():
                raise DataError(f"{taxonomy} not found: {domain} needs its risk taxonomy")
        rng = random.Random(f"{seed}-{domain}")
        train = out_dir / f"{domain}-train.csv"
        stream: list[tuple[dict[str, Any], str]] = []
        out_dir.mkdir(parents=True, exist_ok=True)
        with train.open("w", newline="", encoding="utf-8") as handle:
            writer: csv.DictWriter | None = None
            for name in sets:
                header, rows = _rows(data_dir / name / "train.csv")
                if len(rows) < MIN_ROWS:
                    raise DataError(
                        f"{data_dir / name / 'train.csv'} has {len(rows)} rows: too few to train "
                        f"on and stream (at least {MIN_ROWS})"
                    )
                rng.shuffle(rows)
                cut = max(1, round(len(rows) * STREAM_FRACTION))
                if writer is None:
                    writer = csv.DictWriter(handle, header, extrasaction="ignore")
                    writer.writeheader()
                writer.writerows(rows[cut:])
                held_out = out_dir / f"{domain}-{name}-stream.csv"
                with held_out.open("w", newline="", encoding="utf-8") as stream_handle:
                    stream_writer = csv.DictWriter(stream_handle, header)
                    stream_writer.writeheader()
                    stream_writer.writerows(rows[:cut])
                stream += _stream_rows(domain, name, held_out, taxonomy, rng)
        rng.shuffle(stream)
        prepared[domain] = DomainData(sets, train, stream, taxonomy)
    return prepared


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _stream_rows(
    domain: DomainName, name: str, path: Path, taxonomy: Path | None, rng: random.Random
) -> list[tuple[dict[str, Any], str]]:
    spec = domains.get(domain)
    known = SENTIMENT_LABELS if taxonomy is None else RiskTaxonomy.load(taxonomy).intents
    return [
        (spec.labeled_event(model_input, row, name, rng), label)
        for model_input, row, label in spec.labeled_rows(path, known)
    ]


def synthetic_feed(world: World, domain: DomainName, malformed: float) -> Iterator[Fed]:
    """Endless events of the synthetic world, ``malformed`` of them broken on purpose."""
    while True:
        event, truth = world.draw(domain)
        yield _fed(domain, event, truth, world.rng, malformed)


def data_feed(
    domain: DomainName,
    rows: list[tuple[dict[str, Any], str]],
    run: str,
    rng: random.Random,
    malformed: float,
) -> Iterator[Fed]:
    """Endless events of the held-out ``rows``, in order and again; ids ``<d>-<run>-<n>``, each
    timed when it is drawn, that is when it is sent."""
    if not rows:
        raise DataError(f"no {domain} rows to stream")
    count = 0
    while True:
        for fields, truth in rows:
            count += 1
            event = {
                "id": f"{domain[0]}-{run}-{count:09d}",
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                **fields,
            }
            yield _fed(domain, event, truth, rng, malformed)


def _fed(
    domain: DomainName, event: dict[str, Any], truth: str, rng: random.Random, malformed: float
) -> Fed:
    key = str(event[domains.get(domain).entity]).encode()
    if rng.random() < malformed:
        return Fed(key, malform(event, domain, rng), None, None)
    return Fed(key, json.dumps(event).encode(), event["id"], truth)
