"""Entity states that no result has reached for a while are forgotten: no I/O.

An entity's state keeps at least its newest result however old it is, so a stream of ever
new entities (customers, products) would keep every state it ever saw, in memory and in the
changelog. As Flink's state TTL does, an entity that no result has reached for ``ttl_ms`` is
forgotten; the clock is the partition's Kafka time (when its results were scored), not event
time, so an entity whose clock is wrong is not forgotten for it. A result of a forgotten
entity starts a new state.

    expiry = Expiry(ttl_ms)
    expiry.touch(entity, arrival_ms)     # a result of the entity arrived
    expiry.due(entities) -> [entity]     # untouched for ttl_ms; each is forgotten here too
"""

from __future__ import annotations

from collections.abc import Iterable

SWEEPS_PER_TTL = 10  # how often ``due`` looks, in Kafka time: ten times a ttl


class Expiry:
    """When each entity of one partition was last reached, and which are due to be forgotten."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.touched: dict[str, int] = {}
        self.now_ms: int | None = None  # the newest arrival seen
        self._swept_ms: int | None = None

    def touch(self, entity: str, arrival_ms: int) -> None:
        self.touched[entity] = max(arrival_ms, self.touched.get(entity, arrival_ms))
        self.now_ms = arrival_ms if self.now_ms is None else max(self.now_ms, arrival_ms)

    def due(self, entities: Iterable[str]) -> list[str]:
        """Those of ``entities`` no result reached for more than ``ttl_ms`` before the newest
        arrival; they are forgotten here as well. An entity never touched (a state read back
        from the changelog) counts as reached at the first look. Looks at most once per
        ``ttl_ms / SWEEPS_PER_TTL`` of Kafka time, so a fetch costs no pass over every entity."""
        now = self.now_ms
        if now is None or (
            self._swept_ms is not None and now - self._swept_ms < self.ttl_ms // SWEEPS_PER_TTL
        ):
            return []
        self._swept_ms = now
        gone = [e for e in entities if self.touched.setdefault(e, now) < now - self.ttl_ms]
        for entity in gone:
            del self.touched[entity]
        return gone
