"""Connection options for aiokafka clients and Faust apps, with the configured security."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT as Credentials

from config.settings import KafkaSettings


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options shared by aiokafka producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_list,
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile, keyfile=kafka.ssl_keyfile
        )
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_username is not None and kafka.sasl_password is not None
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return options


def consumer_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options for aiokafka consumers: ``aiokafka_options`` reading committed data only.

    Producers upstream may write in Kafka transactions (Kafka Streams, Flink, any exactly-once
    sink) and abort them; a ``read_uncommitted`` consumer would score what never happened."""
    return {**aiokafka_options(kafka), "isolation_level": "read_committed"}


def group_member_options(
    kafka: KafkaSettings,
    group: str,
    session_timeout_s: float,
    rebalance_timeout_s: float | None = None,
) -> dict[str, Any]:
    """``consumer_options`` for a member of ``group`` that commits by hand what it has handled,
    from the earliest record when the group has no offset yet; heartbeats ten per session.
    ``rebalance_timeout_s`` (default: the session timeout) is how long a rebalance waits for
    the member to finish what it holds."""
    session_ms = int(session_timeout_s * 1000)
    options = {
        **consumer_options(kafka),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": session_ms // 10,
    }
    if rebalance_timeout_s is not None:
        options["rebalance_timeout_ms"] = int(rebalance_timeout_s * 1000)
    return options


def faust_credentials(kafka: KafkaSettings) -> Credentials | None:
    """The same security for a Faust app (``broker_credentials``); None for PLAINTEXT."""
    options = aiokafka_options(kafka)
    context = options.get("ssl_context")
    if kafka.security_protocol.startswith("SASL"):
        return SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    return SSLCredentials(context) if context is not None else None


async def wait_for_broker(
    kafka: KafkaSettings, waiting: Callable[[str], None], every_s: float = 60.0
) -> None:
    """Return once a bootstrap server answers; meanwhile call ``waiting`` with one line at
    once and then every ``every_s`` seconds (a worker may start before its broker)."""
    started = time.monotonic()
    said = -every_s
    while True:
        client = AIOKafkaClient(**aiokafka_options(kafka))
        try:
            await client.bootstrap()
            return
        except KafkaError as error:
            waited = time.monotonic() - started
            if waited - said >= every_s:
                servers = ", ".join(kafka.bootstrap_list)
                waiting(
                    f"no Kafka broker answers at {servers}, or none accepts the credentials "
                    f"({error}); waited {waited:.0f}s"
                )
                said = waited
        finally:
            await client.close()
        await asyncio.sleep(1.0)
