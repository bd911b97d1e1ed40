"""The alert state's changelog records, and the states read back from them: no I/O.

Each entity's state is kept as many records of a compacted topic, so that what a fetch writes
grows with what the fetch changed, not with the length of the windows:

* one record per result in the state, keyed ``["<entity>", "<event id>"]`` (JSON) and marked
  by the header ``kind: observation``, holding ``[event time ms, {field: value}]``; a tombstone
  under the same key when the result leaves the state;
* one record per entity, keyed by the entity, holding ``{"fired": {rule: ms}, "watermark": ms,
  "reached": ms}``;
* tombstones for all of these when the entity is forgotten (``streams.alerting.expiry``).

States written whole under the entity's key by earlier versions (``{"seen": [...], "fired":
..., "watermark": ...}``) are still read. The first write of such an entity writes all its
results as records of their own, and its entity record then replaces the whole state, so
compaction drops the old form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.alerting.engine import EntityState, Observation

KIND_HEADER = "kind"
OBSERVATION = b"observation"
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes | None  # None: a tombstone
    headers: Headers


@dataclass
class Changes:
    """What folds changed in one entity's state since its last write."""

    added: list[Observation] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


def records(entity: str, state: EntityState, changes: Changes, whole: bool = False) -> list[Record]:
    """The records that bring the changelog up to ``state``: its new results, tombstones for
    the results that left, and the entity record. ``whole``: write every result in the state
    (the entity was read from a state written whole)."""
    gone = set(changes.left)
    added = state.seen if whole else [o for o in changes.added if o.event_id not in gone]
    written = {o.event_id for o in changes.added}
    out = [
        Record(_key(entity, o.event_id), json.dumps([o.ts_ms, o.values]).encode(), _MARK)
        for o in added
    ]
    out += [Record(_key(entity, i), None, _MARK) for i in changes.left if i not in written]
    meta = {"fired": state.fired, "watermark": state.watermark_ms, "reached": state.reached_ms}
    out.append(Record(entity.encode(), json.dumps(meta).encode(), []))
    return out


def forget(entity: str, state: EntityState, left: Sequence[str] = ()) -> list[Record]:
    """Tombstones for every record of the entity: its results' (those in ``state`` and those
    that ``left`` it since its last write) and its own."""
    ids = [o.event_id for o in state.seen] + list(left)
    return [Record(_key(entity, i), None, _MARK) for i in ids] + [Record(entity.encode(), None, [])]


@dataclass
class _Entity:
    seen: dict[str, Observation] = field(default_factory=dict)
    fired: dict[str, int] = field(default_factory=dict)
    watermark_ms: int | None = None
    reached_ms: int | None = None
    whole: bool = False  # read from a state written whole


def restore(
    log: Iterable[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]],
) -> tuple[dict[str, EntityState], set[str]]:
    """The entity states of one changelog partition from its (key, value, headers) records in
    offset order, and the entities read from states written whole (to rewrite, see
    ``records``)."""
    entities: dict[str, _Entity] = {}
    for key, value, headers in log:
        if (KIND_HEADER, OBSERVATION) in headers:
            entity, event_id = json.loads(key or b"[]")
            target = entities.setdefault(entity, _Entity())
            if value is None:
                target.seen.pop(event_id, None)
            else:
                ts_ms, values = json.loads(value)
                target.seen[event_id] = Observation(event_id, ts_ms, values)
            continue
        entity = (key or b"").decode()
        if value is None:
            entities.pop(entity, None)
            continue
        data: dict[str, Any] = json.loads(value)
        target = entities.setdefault(entity, _Entity())
        target.whole = "seen" in data
        if target.whole:
            target.seen = {i: Observation(i, t, v) for i, t, v in data["seen"]}
        target.fired = dict(data["fired"])
        # States written before the watermark was kept: the newest event time seen.
        newest = max((o.ts_ms for o in target.seen.values()), default=None)
        target.watermark_ms = data.get("watermark", newest)
        target.reached_ms = data.get("reached")  # written by versions that forget entities
    states = {
        entity: EntityState(
            seen=sorted(e.seen.values(), key=lambda o: o.ts_ms),
            fired=e.fired,
            watermark_ms=e.watermark_ms,
            reached_ms=e.reached_ms,
        )
        for entity, e in entities.items()
    }
    return states, {entity for entity, e in entities.items() if e.whole}


_MARK: Headers = [(KIND_HEADER, OBSERVATION)]


def _key(entity: str, event_id: str) -> bytes:
    return json.dumps([entity, event_id]).encode()
