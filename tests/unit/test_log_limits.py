"""Client logs at most once a minute per kind of message, saying how many were held back."""

from __future__ import annotations

import logging

import pytest

from streams.observability.log_limits import OncePerPeriod, limit_client_logs


def test_each_kind_of_message_passes_once_per_period_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = logging.getLogger("aiokafka.test-limits")
    log.addFilter(OncePerPeriod(60, clock=lambda: now[0]))
    with caplog.at_level(logging.WARNING, logger=log.name):
        for second in range(0, 150):  # two messages a second for 150 seconds
            now[0] = float(second)
            log.warning("Unable connect to node with id %s", 1)
            log.warning("Unable to update metadata from [%s]", 1)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "Unable connect to node with id 1",
        "Unable to update metadata from [1]",
        "Unable connect to node with id 1 (59 more like this in the last 60s)",
        "Unable to update metadata from [1] (59 more like this in the last 60s)",
        "Unable connect to node with id 1 (59 more like this in the last 60s)",
        "Unable to update metadata from [1] (59 more like this in the last 60s)",
    ]


def test_every_kafka_client_logger_and_the_store_sink_are_limited() -> None:
    import aiokafka.consumer.fetcher  # noqa: F401 (the loggers must exist)

    import store.sink  # noqa: F401

    limit = limit_client_logs()
    try:
        assert limit in logging.getLogger("aiokafka.conn").filters
        assert limit in logging.getLogger("aiokafka.consumer.fetcher").filters
        assert limit in logging.getLogger("store.sink").filters
        assert limit not in logging.getLogger("streams.scoring").filters
    finally:
        for name in list(logging.Logger.manager.loggerDict):
            logging.getLogger(name).removeFilter(limit)
