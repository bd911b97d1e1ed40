"""Entity states that no result has reached for a while are forgotten: no I/O.

An entity's state keeps at least its newest result however old it is, so a stream of ever
new entities (customers, products) would keep every state it ever saw, in memory and in the
changelog. As Flink's state TTL does, an entity that no result has reached for ``ttl_ms`` is
forgotten. The clock is the partition's Kafka time (when its results were scored; the caller
caps it at the wall clock, so one record stamped ahead cannot age every entity at once), not
event time, so an entity whose own clock is wrong is not forgotten for it, and a worker
catching up on a backlog ages entities as the backlog's time passes. When an entity was last
reached is part of its state (``EntityState.reached_ms``, kept in the changelog), so a
rebalance does not make it young again.

    expiry = Expiry(ttl_ms)
    expiry.tick(arrival_ms)          # a record of the partition arrived
    expiry.due(states) -> [entity]   # reached more than ttl_ms ago
"""

from __future__ import annotations

from collections.abc import Mapping

from streams.alerting.engine import EntityState

SWEEPS_PER_TTL = 10  # how often ``due`` looks, in Kafka time: ten times a ttl


class Expiry:
    """One partition's clock and which of its entities are due to be forgotten."""

    def __init__(self, ttl_ms: int) -> None:
        self.ttl_ms = ttl_ms
        self.now_ms: int | None = None  # the newest arrival seen
        self._swept_ms: int | None = None

    def tick(self, arrival_ms: int) -> None:
        self.now_ms = arrival_ms if self.now_ms is None else max(self.now_ms, arrival_ms)

    def due(self, states: Mapping[str, EntityState]) -> list[str]:
        """The entities of ``states`` no result reached for more than ``ttl_ms`` before the
        clock. A state that does not know when it was reached (read from a changelog written
        before entities were forgotten) is taken as reached now. Looks at most once per
        ``ttl_ms / SWEEPS_PER_TTL`` of the clock, so a fetch costs no pass over every entity."""
        now = self.now_ms
        if now is None or (
            self._swept_ms is not None and now - self._swept_ms < self.ttl_ms // SWEEPS_PER_TTL
        ):
            return []
        self._swept_ms = now
        gone = []
        for entity, state in states.items():
            if state.reached_ms is None:
                state.reached_ms = now
            elif state.reached_ms < now - self.ttl_ms:
                gone.append(entity)
        return gone
