"""Client logs at most once a minute per kind of message.

With the broker gone, aiokafka logs every failed metadata update, connection attempt and
fetch, thousands of lines a minute, which bury the one line that says what is wrong; with the
store unavailable (a full disk, a server down), the sink logs every retry of its backoff. Each
kind of message (its logger and format string, not its arguments) is let through once per
period; the next one let through says how many were held back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# The Kafka client's loggers, and the store's sink: a logger of one of these names or below it.
CLIENT_LOGGERS = ("aiokafka", "store.sink")


class OncePerPeriod(logging.Filter):
    """Lets each (logger, format string) through at most once per ``period_s``."""

    def __init__(self, period_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.period_s = period_s
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.period_s:g}s)"
        return True


def limit_client_logs(period_s: float = 60.0) -> OncePerPeriod:
    """Apply one ``OncePerPeriod`` to every logger of ``CLIENT_LOGGERS`` imported so far (a
    logger's filter sees only its own records, so each module's logger gets it); return it."""
    limit = OncePerPeriod(period_s)
    names = [
        name
        for name in list(logging.Logger.manager.loggerDict)
        if any(name == client or name.startswith(f"{client}.") for client in CLIENT_LOGGERS)
    ]
    for name in names:
        logger = logging.getLogger(name)
        # Idempotent: a worker limits them before it waits for its broker, and again at start.
        if not any(isinstance(f, OncePerPeriod) for f in logger.filters):
            logger.addFilter(limit)
    return limit
