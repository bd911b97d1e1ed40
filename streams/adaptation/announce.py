"""Announcing the live model of a domain on the compacted ``model.updates`` topic.

Whoever changes the registry's live pointer announces it afterwards: the trainer after the gate
promotes, ``signalyard models promote`` and ``signalyard models rollback``. Workers switch on
the announcement (``swap.py``); a worker that starts later reads the registry itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

from config.settings import DomainName, Settings
from models.registry import Registry
from streams.adaptation.messages import ModelUpdate
from streams.producer import produce


def live_update(registry: Registry, domain: DomainName, reason: str) -> ModelUpdate:
    """The announcement of the domain's live version as the registry has it now."""
    version = registry.live_version(domain)
    if version is None:
        raise ValueError(f"{domain} has no live version to announce")
    return ModelUpdate(
        domain=domain,
        version=version,
        model_name=registry.metadata(domain, version).get("model_name", "?"),
        reason=reason,
        announced_at=datetime.now(UTC),
    )


async def announce(settings: Settings, update: ModelUpdate) -> None:
    """Publish ``update`` keyed by its domain; returns once the broker has it."""
    await produce(settings.kafka, settings.topics.model_updates.name, [update.record()])
