"""After a rebalance, read partitions that have no committed offset again from their beginning.

Faust (faust-streaming 0.15) suspends the flow of messages during a rebalance; a message its
fetch loop was handing to a stream at that moment is dropped, while the consumer's position has
already moved past it. After the rebalance Faust seeks every partition to its committed offset,
which brings such messages back; but aiokafka's ``seek_to_committed`` leaves a partition whose
committed offset is missing (or 0) where it is, so on a partition that has never been committed
those messages are never delivered and the next commit goes past them. Seen in the tests: two
workers of a new group, events produced while the second joined, the first ~50 events of each
of its partitions lost.

Reading such a partition from its beginning is what ``auto_offset_reset = earliest`` means
anyway; what was already delivered is delivered again (at least once), and ClickHouse
collapses the copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust


def reread_uncommitted_after_rebalance(app: faust.App, topics: set[str]) -> None:
    """Make the app's seek to committed offsets go to the beginning of the ``topics``'
    partitions that have no committed offset."""
    consumer = app.consumer
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Mapping[Any, int]:
        committed = await seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if not offset and tp.topic in topics]
        if fresh:
            await consumer.seek_wait(await consumer.earliest_offsets(*fresh))
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning  # type: ignore[method-assign]
