"""No broker at start, or gone while running: the worker waits with one clear line and starts
by itself, and a stop asked for while the broker is gone ends within the shutdown timeout
(real broker: the test's own, stopped and started again; a worker process)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from conftest import Worker, new_worker
from helpers import ids_of, provision, read_until, send, synthetic, wait_for

from config.settings import Settings, StackSettings
from signalyard.local import local_kafka
from streams.groups import wait_until_stable
from streams.shared import EXIT_FATAL

pytestmark = pytest.mark.kafka

SHUTDOWN_TIMEOUT_S = 15


def test_a_worker_waits_for_its_broker_and_stops_in_time_without_it(
    own_broker: tuple[Settings, StackSettings, Path], registry_dir: Path, workers: list[Worker]
) -> None:
    settings, stack, home = own_broker
    provision(settings)
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    worker = new_worker(workers, settings, registry_dir, app_id, "w")
    worker.env["SIGNALYARD_PIPELINE__SHUTDOWN_TIMEOUT_S"] = str(SHUTDOWN_TIMEOUT_S)

    assert local_kafka.down(home, stack)
    try:
        worker.start("sensors")

        def waiting() -> list[str]:
            return [line for line in worker.log.read_text().splitlines() if "no Kafka" in line]

        # A loaded machine takes its time to import the worker; the line says once, at once,
        # what it waits for, and again only a minute later.
        wait_for("the worker's line about its missing broker", lambda: bool(waiting()), worker)
        time.sleep(5)
        assert worker.running, worker.tail()
        assert len(waiting()) == 1 and "waiting for it" in waiting()[0], waiting()
    finally:
        local_kafka.up(home, stack)

    records = synthetic("sensors", 300, seed=3)
    asyncio.run(send(settings, "sensors", records))
    scored = asyncio.run(
        read_until(settings, lambda s: len(s.ids["sensors"]) >= 300, ("sensors",), timeout=120)
    )
    assert set(scored.ids["sensors"]) == ids_of(records), worker.tail()
    # Started through and through (Faust creating its topics when the broker goes is another
    # matter: it ends the worker with status 1).
    pipeline = settings.pipeline.model_copy(update={"app_id": app_id})
    for group in (pipeline.scoring_group, f"{app_id}-feedback", app_id):
        assert asyncio.run(wait_until_stable(settings.kafka, group, 1, 120)), group

    assert local_kafka.down(home, stack)
    try:
        time.sleep(5)  # the worker finds its broker gone
        asked = time.monotonic()
        status = worker.stop(timeout_s=SHUTDOWN_TIMEOUT_S + 30)
        took = time.monotonic() - asked
    finally:
        local_kafka.up(home, stack)
    assert status in (0, EXIT_FATAL), worker.tail()
    assert took < SHUTDOWN_TIMEOUT_S + 5, f"stopped after {took:.0f}s\n{worker.tail()}"
