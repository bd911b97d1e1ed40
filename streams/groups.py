"""The state of a consumer group, as the broker's coordinator sees it."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError

from config.settings import KafkaSettings
from streams.connection import aiokafka_options

# A fresh broker creates its offsets topic on the first group request; until its coordinator
# has loaded, group requests answer with one of these.
COORDINATOR_NOT_READY = (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError)


async def group_state(kafka: KafkaSettings, group: str) -> tuple[str, int]:
    """The group's state (Empty, PreparingRebalance, Stable, Dead, ...) and member count."""
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka))
    await admin.start()
    try:
        response = (await admin.describe_consumer_groups([group]))[0]
        _, _, state, _, _, members = response.groups[0][:6]
        return state, len(members)
    finally:
        await admin.close()


async def wait_until_stable(
    kafka: KafkaSettings, group: str, members: int, timeout_s: float, poll_s: float = 0.5
) -> bool:
    """Whether the group became Stable with exactly ``members`` members within the timeout:
    then every member has its share of the partitions."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            if await group_state(kafka, group) == ("Stable", members):
                return True
        except COORDINATOR_NOT_READY:
            pass
        await asyncio.sleep(poll_s)
    return False
