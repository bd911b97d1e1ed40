"""Provisioning the topics Signalyard reads and writes.

Faust does not create source topics, and the broker has auto-creation off, so every topic is
created here before workers start: missing ones are created, existing ones get more partitions
when settings ask for more (Kafka cannot remove partitions) and their retention and cleanup
policy brought in line with the settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

import domains
from config.settings import KafkaSettings, Settings, TopicSettings
from streams.connection import aiokafka_options


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    action: str  # created, grown, updated or unchanged


def project_topics(settings: Settings) -> list[TopicSettings]:
    """Every topic the project reads or writes: those the settings name, and each registered
    domain's raw and scored topics."""
    named = [
        *settings.topics.all(),
        *(topic for name in domains.names() for topic in
          (settings.topics.raw(name), settings.topics.scored(name))),
    ]  # fmt: skip
    return list({topic.name: topic for topic in named}.values())


def topic_configs(topic: TopicSettings) -> dict[str, str]:
    return {"retention.ms": str(topic.retention_ms), "cleanup.policy": topic.cleanup_policy}


async def provision_topics(kafka: KafkaSettings, topics: list[TopicSettings]) -> list[TopicState]:
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka))
    await admin.start()
    try:
        return [await _provision(admin, topic) for topic in topics]
    finally:
        await admin.close()


async def _provision(admin: AIOKafkaAdminClient, topic: TopicSettings) -> TopicState:
    current = await partition_count(admin, topic.name)
    if current is None:
        response = await admin.create_topics(
            [
                NewTopic(
                    name=topic.name,
                    num_partitions=topic.partitions,
                    replication_factor=topic.replication_factor,
                    topic_configs=topic_configs(topic),
                )
            ]
        )
        _raise_on_topic_errors(response.topic_errors, allowed={36})  # 36: already exists
        await _wait_until_visible(admin, topic.name)
        return TopicState(topic.name, topic.partitions, "created")
    action = "unchanged"
    if current < topic.partitions:
        await admin.create_partitions({topic.name: NewPartitions(total_count=topic.partitions)})
        await _wait_until_visible(admin, topic.name, partitions=topic.partitions)
        action = "grown"
    if await _configs_differ(admin, topic):
        wanted = topic_configs(topic)
        (response,) = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic.name, configs=wanted)]
        )
        for error_code, message, *_ in response.resources:
            if error_code != 0:
                raise RuntimeError(f"changing the configuration of {topic.name} failed: {message}")
        await _wait_until_visible(admin, topic.name, topic.partitions, configs=wanted)
        action = "updated" if action == "unchanged" else action
    return TopicState(topic.name, max(current, topic.partitions), action)


async def partition_count(admin: AIOKafkaAdminClient, name: str) -> int | None:
    """The topic's partition count, or None when it does not exist."""
    description = (await admin.describe_topics([name]))[0]
    if description["error_code"] == 3:  # UNKNOWN_TOPIC_OR_PARTITION
        return None
    if description["error_code"] != 0:
        raise RuntimeError(f"describing topic {name} failed: error {description['error_code']}")
    return len(description["partitions"])


async def _wait_until_visible(
    admin: AIOKafkaAdminClient,
    name: str,
    partitions: int = 1,
    configs: dict[str, str] | None = None,
    timeout_s: float = 15,
) -> None:
    # New topics, partitions and configurations reach the broker's metadata a moment after
    # the controller accepts them; callers of init expect to use them right away.
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        count = await partition_count(admin, name)
        if count is not None and count >= partitions:
            current = await topic_config(admin, name)
            if current and all(current.get(key) == value for key, value in (configs or {}).items()):
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(
        f"topic {name} did not show {partitions} partitions"
        f"{' and its new configuration' if configs else ''} within {timeout_s:g}s"
    )


async def topic_config(admin: AIOKafkaAdminClient, name: str) -> dict[str, str]:
    """The topic's effective configuration; empty while the broker does not know it yet."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    error_code, message, _, _, entries = responses[0].resources[0]
    if error_code == 3:  # UNKNOWN_TOPIC_OR_PARTITION
        return {}
    if error_code != 0:
        raise RuntimeError(f"describing the configuration of {name} failed: {message}")
    return {entry[0]: entry[1] for entry in entries}


async def _configs_differ(admin: AIOKafkaAdminClient, topic: TopicSettings) -> bool:
    current = await topic_config(admin, topic.name)
    return any(current.get(key) != value for key, value in topic_configs(topic).items())


def _raise_on_topic_errors(errors: list[tuple], allowed: set[int]) -> None:
    for name, code, *message in errors:
        if code not in allowed and code != 0:
            raise RuntimeError(f"creating topic {name} failed: error {code} {message}")
