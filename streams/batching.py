"""Micro-batching: a batch closes at a maximum size or a maximum wait, whichever comes first.

One task puts items (the agent reading the stream), one task takes batches (the scorer). The
wait is counted from the batch's first item, like Triton's dynamic batcher's maximum queue
delay. While a full batch waits to be taken, ``put`` waits too: that is the back-pressure that
stops the agent from reading further ahead than one batch while a slow batch is scored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    def __init__(self, max_size: int, max_wait_s: float) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._items: list[T] = []
        self._opened_at = 0.0
        self._not_empty = asyncio.Event()
        self._full = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, item: T) -> None:
        await self.put_many((item,))

    async def put_many(self, items: Sequence[T]) -> None:
        """Append the items in order, waiting whenever the batch being filled is full."""
        start = 0
        while start < len(items):
            while len(self._items) >= self.max_size:
                await self._has_room.wait()
            if not self._items:
                self._opened_at = asyncio.get_running_loop().time()
                self._not_empty.set()
            end = start + self.max_size - len(self._items)
            self._items.extend(items[start:end])
            start = end
            if len(self._items) >= self.max_size:
                self._full.set()
                self._has_room.clear()

    async def next_batch(self) -> list[T]:
        """Wait for a first item, then until the batch is full or its wait is over."""
        await self._not_empty.wait()
        remaining = self._opened_at + self.max_wait_s - asyncio.get_running_loop().time()
        if not self._full.is_set() and remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), remaining)
        batch, self._items = self._items, []
        self._not_empty.clear()
        self._full.clear()
        self._has_room.set()
        return batch
