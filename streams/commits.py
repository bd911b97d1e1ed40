"""Which offsets may be committed while batches are delivered out of order (pure).

Batches are registered in the order their records were read; each notes, per partition, the
last offset it holds. A later batch may be delivered before an earlier one, so a partition's
commit point only moves past batches that are all delivered: a commit never skips a record
still being scored or written.

Offsets have gaps that no record fills: transaction markers, and the records of aborted
transactions that a ``read_committed`` consumer never returns. The reader reports the
consumer's position after each fetch (``read``); once every record read from a partition is
delivered, its commit point moves on to that position, so a partition whose last offsets are
markers is still committed to its end (lag 0).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Partition = tuple[str, int]  # (topic, partition)


@dataclass(eq=False)
class Ticket:
    """One registered batch: the last offset it holds in each of its partitions."""

    last_offsets: Mapping[Partition, int]
    delivered: bool = False


@dataclass
class CommitTracker:
    _in_order: dict[Partition, deque[Ticket]] = field(default_factory=dict)
    _commit_points: dict[Partition, int] = field(default_factory=dict)
    _committed: dict[Partition, int] = field(default_factory=dict)
    _records_end: dict[Partition, int] = field(default_factory=dict)  # past the last record read
    _positions: dict[Partition, int] = field(default_factory=dict)  # the consumer's, last fetch

    def register(self, last_offsets: Mapping[Partition, int]) -> Ticket:
        """Note a batch about to be scored; ``last_offsets`` per partition it has records of."""
        ticket = Ticket(dict(last_offsets))
        for partition in ticket.last_offsets:
            self._in_order.setdefault(partition, deque()).append(ticket)
        return ticket

    def delivered(self, ticket: Ticket) -> None:
        """The batch's results are written; move each of its partitions' commit points on."""
        ticket.delivered = True
        for partition in ticket.last_offsets:
            queue = self._in_order.get(partition)
            while queue and queue[0].delivered:
                # The commit offset is the next record to read, one past the last delivered.
                self._commit_points[partition] = queue.popleft().last_offsets[partition] + 1
            self._pass_gap(partition)

    def read(self, partition: Partition, position: int, last_offset: int | None) -> bool:
        """After a fetch: the consumer's ``position`` on the partition and the offset of the
        last record handed on from it (None: no record this time). Returns whether the commit
        point moved (past markers or aborted records, everything read being delivered)."""
        if last_offset is not None:
            self._records_end[partition] = last_offset + 1
        self._positions[partition] = position
        return self._pass_gap(partition)

    def _pass_gap(self, partition: Partition) -> bool:
        position = self._positions.get(partition)
        point = self._commit_points.get(partition)
        if position is None or self._in_order.get(partition) or (point or 0) >= position:
            return False
        # Every record read so far is delivered (or none was read since the assignment).
        if partition in self._records_end and (point or 0) < self._records_end[partition]:
            return False
        self._commit_points[partition] = position
        return True

    def to_commit(self) -> dict[Partition, int]:
        """Commit points that moved since they were last reported as ``committed``."""
        return {
            partition: offset
            for partition, offset in self._commit_points.items()
            if self._committed.get(partition) != offset
        }

    def committed(self, offsets: Mapping[Partition, int]) -> None:
        self._committed.update(offsets)

    def committed_offset(self, partition: Partition) -> int | None:
        """The last offset committed for the partition by this worker, if any."""
        return self._committed.get(partition)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop what is known of partitions this worker no longer owns."""
        for partition in partitions:
            self._in_order.pop(partition, None)
            self._commit_points.pop(partition, None)
            self._committed.pop(partition, None)
            self._records_end.pop(partition, None)
            self._positions.pop(partition, None)
