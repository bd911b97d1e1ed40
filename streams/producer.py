"""Producing raw events: from a CSV or JSONL file, or from the synthetic world, at a given rate.

Producers do not validate: whatever a file holds reaches the raw topic, and the worker either
scores it or dead-letters it with the reason, so there is one judge of what is valid. A CSV
row is only given its JSON types (numbers, text) according to the domain's schema; a row that
does not fit is sent as its cells, as strings, to be dead-lettered.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

import domains
from config.settings import DomainName, KafkaSettings
from streams.connection import aiokafka_options

Record = tuple[bytes | None, bytes]
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
PACING_STEP_S = 0.01
UNPACED_CHUNK = 1000  # unpaced sending still yields to the loop this often


def file_format(path: Path) -> str:
    """csv or jsonl, from the file name; ValueError for anything else."""
    try:
        return FILE_FORMATS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(FILE_FORMATS)
        raise ValueError(f"{path.name}: unknown file type (expected {known})") from None


def read_records(domain: DomainName, path: Path) -> Iterator[Record]:
    """The file's events as (key, value) records of the domain's raw topic."""
    if file_format(path) == "csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                yield csv_record(domain, row)
        return
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield jsonl_record(domain, line.rstrip(b"\r\n"))


def csv_record(domain: DomainName, row: dict[str, str]) -> Record:
    cells = {name: value for name, value in row.items() if name and value != ""}
    try:
        event = domains.get(domain).event.model_validate(cells, strict=False)
    except ValidationError:
        return _key(domain, cells), json.dumps(cells).encode()
    return event.entity.encode(), event.model_dump_json(by_alias=True, exclude_none=True).encode()


def jsonl_record(domain: DomainName, line: bytes) -> Record:
    try:
        parsed = json.loads(line)
    except ValueError:
        return None, line
    return (_key(domain, parsed) if isinstance(parsed, dict) else None), line


def _key(domain: DomainName, event: dict) -> bytes | None:
    """The event's entity as its schema derives it, read from its fields unvalidated: an event
    the worker will dead-letter still keeps to its entity's partition where it names one."""
    try:
        entity = domains.get(domain).event.model_construct(**event).entity
    except (AttributeError, IndexError, TypeError):
        return None
    return str(entity).encode() if entity else None


async def produce(
    kafka: KafkaSettings,
    topic: str,
    records: Iterable[Record],
    rate: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Send the records (at ``rate`` per second when given) until they or ``stop`` end;
    return how many were sent, all acknowledged by the broker."""
    producer = AIOKafkaProducer(**aiokafka_options(kafka), acks="all", linger_ms=5)
    await producer.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    try:
        iterator = iter(records)
        while stop is None or not stop.is_set():
            # As many records as the schedule allows by now, then a moment for the loop.
            wanted = (
                UNPACED_CHUNK if rate is None else int((loop.time() - started) * rate) + 1 - sent
            )
            chunk = list(itertools.islice(iterator, max(wanted, 0)))
            for key, value in chunk:
                await producer.send(topic, value, key=key)
            sent += len(chunk)
            if len(chunk) < wanted:
                break  # the records ran out
            await asyncio.sleep(0 if rate is None else PACING_STEP_S)
        await producer.flush()
    finally:
        await producer.stop()
    return sent
