"""Dead letters: messages that cannot be scored, kept with where they came from and why (pure).

On the ``deadletter`` topic the record's key and value are the original key and bytes, untouched,
so a fixed message can be replayed as it was; the origin, the reason and its kind travel in
headers named as Kafka Connect names them (``__connect.errors.*``), so Connect tooling reads
them too. The ClickHouse ``deadletter`` table holds the same facts (but the kind), keyed by
(topic, partition, offset), so a replayed dead letter does not count twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

HEADER_TOPIC = "__connect.errors.topic"
HEADER_PARTITION = "__connect.errors.partition"
HEADER_OFFSET = "__connect.errors.offset"
HEADER_REASON = "__connect.errors.exception.message"
HEADER_KIND = "__connect.errors.exception.class.name"  # the kind of problem: not JSON, too large...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source_topic: str
    partition: int
    offset: int
    kind: str
    reason: str
    key: bytes | None
    payload: bytes
    ts: datetime  # when the message reached Kafka

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (HEADER_TOPIC, self.source_topic.encode()),
            (HEADER_PARTITION, str(self.partition).encode()),
            (HEADER_OFFSET, str(self.offset).encode()),
            (HEADER_KIND, self.kind.encode()),
            (HEADER_REASON, self.reason.encode()),
        ]

    def row(self) -> dict[str, Any]:
        return {
            "source_topic": self.source_topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "payload": self.payload,
            "ts": self.ts,
        }


def kind_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """The kind of problem recorded on a dead-letter record."""
    return dict(headers or []).get(HEADER_KIND, b"unknown").decode()
