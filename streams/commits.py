"""Which offsets may be committed while batches are delivered out of order (pure).

Batches are registered in the order their records were read; each notes, per partition, the
last offset it holds. A later batch may be delivered before an earlier one, so a partition's
commit point only moves past batches that are all delivered: a commit never skips a record
still being scored or written.
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
