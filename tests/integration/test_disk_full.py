"""The embedded store's disk fills: writes fail, scoring waits instead of dropping results,
offsets stay behind the unwritten rows, the reason is logged about once a minute, and when
space returns the worker goes on by itself with every event stored once (real broker, a
worker process whose home is a small tmpfs this test mounts; needs root, as CI has)."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Worker, new_worker, query
from helpers import committed, ids_of, provision, read_until, send, synthetic

from config.settings import Settings, load_settings

pytestmark = pytest.mark.kafka

SIZE = "96m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """A file that takes every free byte of ``disk``."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


def test_a_full_disk_pauses_the_store_and_nothing_is_lost_when_space_returns(
    kafka: Settings, registry_dir: Path, workers: list[Worker], small_disk: Path
) -> None:
    settings = load_settings(home=small_disk / "home", topics=kafka.topics.model_dump())
    provision(settings)
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    group = settings.pipeline.model_copy(update={"app_id": app_id}).scoring_group
    worker = new_worker(workers, settings, registry_dir, app_id, "w")
    worker.log = small_disk.parent / "w.log"  # the log must not need the full disk
    worker.start("sensors")
    first = synthetic("sensors", 200, seed=5)
    asyncio.run(send(settings, "sensors", first))
    asyncio.run(read_until(settings, lambda s: len(s.ids["sensors"]) >= 200, ("sensors",)))
    time.sleep(2)  # the first rows reach the store

    filler = fill(small_disk)
    later = synthetic("sensors", 300, seed=6)
    asyncio.run(send(settings, "sensors", later))
    time.sleep(25)  # writes fail meanwhile
    assert worker.running, worker.tail()
    # The offsets stay behind the rows the store does not have.
    assert sum(asyncio.run(committed(settings, group)).values()) <= len(first)
    log = worker.log.read_text().splitlines()
    complaints = [line for line in log if "not enough space" in line]
    assert 1 <= len(complaints) <= 2, complaints

    os.remove(filler)
    expected = ids_of(first) | ids_of(later)
    scored = asyncio.run(
        read_until(settings, lambda s: len(s.ids["sensors"]) >= len(expected), ("sensors",))
    )
    assert set(scored.ids["sensors"]) == expected
    assert worker.stop() == 0, worker.tail()
    rows = query(settings, "SELECT event_id, count() FROM sensors_scores FINAL GROUP BY event_id")
    assert dict(rows) == dict.fromkeys(expected, 1)
