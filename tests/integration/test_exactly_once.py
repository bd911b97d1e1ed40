"""Exactly-once results: a crash, a rebalance, a broker restart or a zombie worker never puts
a result or an alert on Kafka twice, as a ``read_committed`` subscriber reads them.

Workers run with ``processing_guarantee = "exactly_once"`` (real broker, worker processes, tiny
real models). Each test ends by reading every partition of the scored and alerts topics from
the start to its end (the last stable offset), so a duplicate committed late is still seen.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from conftest import Worker, new_worker, query
from helpers import ids_of, provision, send, synthetic

import domains
from config.settings import DomainName, Settings, StackSettings, TopicSettings, load_settings
from signalyard.local import local_kafka
from streams.connection import consumer_options
from streams.groups import wait_until_stable
from streams.shared import EXIT_FATAL

pytestmark = pytest.mark.kafka

EXACTLY_ONCE = {
    "SIGNALYARD_PIPELINE__PROCESSING_GUARANTEE": "exactly_once",
    # Alerts as deployed: in the scoring workers, under the same guarantee.
    "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "true",
}
WAIT_S = 180
READINGS = 5000  # sensor readings of the tests that stream sensors alone
# Events per domain of the test that streams every domain: the text models score a few hundred
# a second, and a third of these is still enough for the kill to come mid-stream.
EVENTS_PER_DOMAIN = 2000
SECOND_SHARE = 500  # events per domain of that test sent only after its kill
HEIR_SHARE = 2000  # readings of the zombie test sent only after the zombie's pause


def exactly_once_worker(
    started: list[Worker], settings: Settings, registry: Path, app_id: str, name: str
) -> Worker:
    worker = new_worker(started, settings, registry, app_id, name)
    worker.env.update(EXACTLY_ONCE)
    return worker


async def read_committed(
    settings: Settings, topics: Iterable[TopicSettings]
) -> dict[str, list[dict]]:
    """Every committed message of ``topics``, from the start of each partition to its end."""
    consumer = AIOKafkaConsumer(**consumer_options(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic.name, partition)
            for topic in topics
            for partition in range(topic.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        messages: dict[str, list[dict]] = {tp.topic: [] for tp in partitions}
        pending = {tp for tp in partitions if ends[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                messages[tp.topic].extend(json.loads(record.value) for record in records)
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
        return messages
    finally:
        await consumer.stop()


class Tally:
    """Counts the committed messages of topics as they arrive (one reader, read on demand)."""

    def __init__(self, settings: Settings, topics: Iterable[TopicSettings]) -> None:
        self.consumer = AIOKafkaConsumer(
            **consumer_options(settings.kafka), enable_auto_commit=False
        )
        self.partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        self.total = 0

    async def __aenter__(self) -> Tally:
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def at_least(self, count: int, timeout_s: float = WAIT_S) -> bool:
        """Whether ``count`` messages arrived within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.total < count and time.monotonic() < deadline:
            fetched = await self.consumer.getmany(timeout_ms=1000)
            self.total += sum(len(records) for records in fetched.values())
        return self.total >= count


async def all_joined(settings: Settings, app_id: str, members: int) -> bool:
    """Whether every group of the app's workers is stable with ``members`` members: the workers
    have started (a stop or a broker restart in the middle of a start-up is another matter)."""
    pipeline = settings.pipeline.model_copy(update={"app_id": app_id})
    groups = (pipeline.scoring_group, f"{app_id}-alerts", f"{app_id}-feedback", app_id)
    for group in groups:
        if not await wait_until_stable(settings.kafka, group, members, timeout_s=WAIT_S):
            return False
    return True


def scored_topics(settings: Settings, names: Iterable[DomainName]) -> list[TopicSettings]:
    return [settings.topics.scored(domain) for domain in names]


def scored_ids(settings: Settings, names: Iterable[DomainName]) -> dict[DomainName, Counter[str]]:
    topics = {settings.topics.scored(domain).name: domain for domain in names}
    messages = asyncio.run(read_committed(settings, scored_topics(settings, names)))
    return {topics[t]: Counter(m["event_id"] for m in found) for t, found in messages.items()}


def assert_each_once(
    settings: Settings, expected: dict[DomainName, set[str]], log: Callable[[], str]
) -> list[dict]:
    """Each expected result once on its scored topic, no alert twice; returns the alerts."""
    for domain, counts in scored_ids(settings, expected).items():
        repeated = {event_id: n for event_id, n in counts.items() if n > 1}
        assert not repeated, f"{domain}: {len(repeated)} results twice\n{log()}"
        assert set(counts) == expected[domain], f"{domain}: {len(counts)} results\n{log()}"
    alerts = asyncio.run(read_committed(settings, [settings.topics.alerts]))
    found = alerts[settings.topics.alerts.name]
    twice = [i for i, n in Counter(a["alert_id"] for a in found).items() if n > 1]
    assert not twice, f"{len(twice)} alerts twice"
    return found


async def send_all(
    settings: Settings,
    records: dict[DomainName, list[tuple[bytes, bytes]]],
    rate: float | None = None,
    stop: asyncio.Event | None = None,
) -> dict[DomainName, int]:
    """Send each domain's records (at ``rate`` a second each) until they or ``stop`` end; how
    many of each were sent."""
    sent = await asyncio.gather(
        *(send(settings, domain, batch, rate, stop) for domain, batch in records.items())
    )
    return dict(zip(records, sent, strict=True))


def test_a_worker_killed_mid_stream_publishes_every_result_and_alert_once(
    kafka: Settings, registry_dir: Path, workers: list[Worker]
) -> None:
    settings = kafka
    provision(settings)
    names = domains.names()
    records = {
        name: synthetic(name, EVENTS_PER_DOMAIN, seed=40 + n) for n, name in enumerate(names)
    }
    expected = {domain: ids_of(batch) for domain, batch in records.items()}
    total = sum(len(ids) for ids in expected.values())
    app_id = f"t-{uuid.uuid4().hex[:8]}"

    async def kill_and_restart() -> Worker:
        async with Tally(settings, scored_topics(settings, names)) as scored:
            first = exactly_once_worker(workers, settings, registry_dir, app_id, "first").start()
            # The kill comes while events still arrive, and the last SECOND_SHARE of each domain
            # are sent only after it, so the second worker has work to start for however busy
            # the machine: the first cannot have scored everything before its kill.
            kill = asyncio.Event()
            before_kill = {domain: batch[:-SECOND_SHARE] for domain, batch in records.items()}
            feeding = asyncio.create_task(send_all(settings, before_kill, rate=1500, stop=kill))
            assert await scored.at_least(total // 3), first.tail()
            assert first.kill() == -signal.SIGKILL
            kill.set()
            sent = await feeding
            second = exactly_once_worker(workers, settings, registry_dir, app_id, "second")
            second.start()
            await send_all(settings, {d: batch[sent[d] :] for d, batch in records.items()})
            assert await scored.at_least(total), second.tail()
        assert second.stop() == 0, second.tail()
        return second

    second = asyncio.run(kill_and_restart())
    alerts = assert_each_once(settings, expected, second.tail)
    assert alerts, "the stream fires alerts, so that their count means something"

    # The stored scores carry their lineage: the input record and the model bytes.
    rows = query(
        settings,
        "SELECT source_topic, source_partition, source_offset, model_sha256, "
        "processing_guarantee FROM sensors_scores FINAL",
    )
    assert len(rows) == len(expected["sensors"])
    assert {row[0] for row in rows} == {settings.topics.raw("sensors").name}
    assert len({(row[1], row[2]) for row in rows}) == len(rows)
    assert {len(row[3]) for row in rows} == {64}
    assert {row[4] for row in rows} == {"exactly_once"}


# The three tests below stream sensor readings only: the fast model keeps them short, and what
# they try (group membership, the broker, fencing) is the same for every domain.


def test_a_worker_joining_and_leaving_mid_stream_doubles_nothing(
    kafka: Settings, registry_dir: Path, workers: list[Worker], tmp_path: Path
) -> None:
    """Two rebalances during the stream; embedded stores, so each worker has its own home."""
    settings = kafka
    provision(settings)
    records = synthetic("sensors", READINGS, seed=60)
    expected = {"sensors": ids_of(records)}
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    joining = load_settings(home=tmp_path / "joining", topics=settings.topics.model_dump())

    async def stream_with_rebalances() -> Worker:
        # The stream comes in two halves, so that each rebalance falls inside it however slow
        # the machine: the second worker joins while the first half flows and leaves while
        # the second half does.
        half = READINGS // 2
        async with Tally(settings, scored_topics(settings, ["sensors"])) as scored:
            first = exactly_once_worker(workers, settings, registry_dir, app_id, "first")
            first.start("sensors")
            feeding = asyncio.create_task(send(settings, "sensors", records[:half], rate=150))
            assert await scored.at_least(READINGS // 5), first.tail()
            second = exactly_once_worker(workers, joining, registry_dir, app_id, "second")
            second.start("sensors")
            assert await all_joined(settings, app_id, members=2)
            await feeding
            assert await scored.at_least(half), second.tail()
            feeding = asyncio.create_task(send(settings, "sensors", records[half:], rate=100))
            assert second.stop() == 0, second.tail()
            assert not feeding.done(), "the second worker must leave mid-stream"
            await feeding
            assert await scored.at_least(READINGS), first.tail()
        assert first.stop() == 0, first.tail()
        return first

    first = asyncio.run(stream_with_rebalances())
    assert_each_once(settings, expected, first.tail)


def test_a_broker_restarted_mid_stream_loses_and_doubles_nothing(
    own_broker: tuple[Settings, StackSettings, Path], registry_dir: Path, workers: list[Worker]
) -> None:
    """The test's own broker goes down for a few seconds while the worker scores and sends."""
    settings, stack, home = own_broker
    provision(settings)
    records = synthetic("sensors", READINGS, seed=80)
    expected = {"sensors": ids_of(records)}
    app_id = f"t-{uuid.uuid4().hex[:8]}"

    async def stream_across_a_restart() -> Worker:
        worker = exactly_once_worker(workers, settings, registry_dir, app_id, "w").start("sensors")
        assert await all_joined(settings, app_id, members=1), worker.tail()
        half = len(records) // 2
        await send(settings, "sensors", records[:half], rate=2000)
        async with Tally(settings, scored_topics(settings, ["sensors"])) as scored:
            assert await scored.at_least(half // 2), worker.tail()
        assert local_kafka.down(home, stack)
        await asyncio.sleep(5)
        local_kafka.up(home, stack)
        await send(settings, "sensors", records[half:], rate=2000)
        async with Tally(settings, scored_topics(settings, ["sensors"])) as scored:
            if not await scored.at_least(READINGS, timeout_s=60) and not worker.running:
                # An output that could not be sent in time ends the worker (status 70); a
                # supervisor restarts it, and it reads on from the committed offsets.
                assert worker.process is not None and worker.process.returncode == EXIT_FATAL
                worker = exactly_once_worker(workers, settings, registry_dir, app_id, "again")
                worker.start("sensors")
            assert await scored.at_least(READINGS), worker.tail()
        assert worker.stop() == 0, worker.tail()
        return worker

    worker = asyncio.run(stream_across_a_restart())
    assert_each_once(settings, expected, worker.tail)
    # The client's complaints while the broker was away come about once a minute each.
    complaints = [line for line in worker.log.read_text().splitlines() if "Unable" in line]
    assert len(complaints) <= 10, complaints[:20]


def test_a_fenced_zombie_commits_nothing(
    kafka: Settings, registry_dir: Path, workers: list[Worker], tmp_path: Path
) -> None:
    """A worker paused past its session timeout loses its partitions to another; resumed, it
    can neither publish nor commit: the broker fenced its transactional producers."""
    settings = kafka
    provision(settings)
    records = synthetic("sensors", READINGS, seed=99)
    expected = {"sensors": ids_of(records)}
    app_id = f"t-{uuid.uuid4().hex[:8]}"
    other = load_settings(home=tmp_path / "other", topics=settings.topics.model_dump())

    async def pause_and_take_over() -> Worker:
        async with Tally(settings, scored_topics(settings, ["sensors"])) as scored:
            zombie = exactly_once_worker(workers, settings, registry_dir, app_id, "zombie")
            zombie.start("sensors")
            # The zombie is paused while readings still arrive (batches uncommitted), and the
            # last HEIR_SHARE are sent only then: on a busy machine the zombie could otherwise
            # score them all before its pause, and the heir be stopped before it started.
            pause = asyncio.Event()
            feeding = asyncio.create_task(
                send(settings, "sensors", records[:-HEIR_SHARE], rate=500, stop=pause)
            )
            assert await scored.at_least(1000), zombie.tail()
            assert zombie.process is not None
            zombie.process.send_signal(signal.SIGSTOP)
            pause.set()
            sent_before_pause = await feeding
            heir = exactly_once_worker(workers, other, registry_dir, app_id, "heir")
            heir.start("sensors")
            await send(settings, "sensors", records[sent_before_pause:])
            assert await scored.at_least(READINGS), heir.tail()
        zombie.process.send_signal(signal.SIGCONT)
        await asyncio.sleep(10)  # the zombie runs on: whatever it still had, it tries to commit
        assert heir.stop() == 0, heir.tail()
        zombie.stop()
        return zombie

    zombie = asyncio.run(pause_and_take_over())
    assert_each_once(settings, expected, zombie.tail)
    # Resumed, the zombie is refused either way: by the broker when it commits (fenced), or by
    # its own producer when its hand-over has already closed the transaction it would send in.
    log = zombie.tail(50_000)
    refusals = ("ProducerFenced", "Can't send messages while not in transaction")
    assert any(refusal in log for refusal in refusals), zombie.tail()
